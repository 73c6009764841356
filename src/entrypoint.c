// The extendr module registers the routines; R looks for R_init_<package>.
void R_init_cellweave_extendr(void *dll);

void R_init_cellweave(void *dll) {
    R_init_cellweave_extendr(dll);
}
