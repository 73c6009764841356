.onLoad <- function(libname, pkgname) {
    cw_init()
}
