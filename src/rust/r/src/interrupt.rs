//! Ctrl-C and console output from long Rust computations.
//!
//! R signals an interrupt by a longjmp out of R_CheckUserInterrupt, which must never cross
//! Rust frames. R_ToplevelExec runs the check in its own top-level context and tells us
//! whether it was cut short, so Rust can stop cleanly and return an R error instead.

use extendr_api::prelude::*;
use std::ffi::c_void;
use std::io::Write;

unsafe extern "C" {
    fn R_ToplevelExec(fun: extern "C" fn(*mut c_void), data: *mut c_void) -> i32;
    fn R_CheckUserInterrupt();
    fn R_FlushConsole();
}

extern "C" fn check_interrupt_in_toplevel(_: *mut c_void) {
    unsafe { R_CheckUserInterrupt() }
}

/// True when the user pressed Ctrl-C (or sent SIGINT) since the last check.
pub fn interrupt_pending() -> bool {
    unsafe { R_ToplevelExec(check_interrupt_in_toplevel, std::ptr::null_mut()) == 0 }
}

/// Writes to R's console (stderr side, like message()) and flushes, for progress lines.
pub fn console(text: &str) {
    extendr_api::prelude::reprint!("{}", text);
    let _ = std::io::stderr().flush();
    unsafe { R_FlushConsole() };
}
