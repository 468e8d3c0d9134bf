//! The example module `relib-pure demo` and `relib-pure inspect --example` build and use.
//!
//! A relib 0.7 module with unloading, written without the relib crates so that a bare
//! `rustc` builds it in a second (shared/relib-abi.md §1-§4): the compilation info,
//! `main`, one export of trait `Exports`, one import of trait `Imports`, and the
//! internal exports and import slots of the unloading protocol. Its allocations are
//! the system allocator's, not relib's tracker: load it with
//! `enable_alloc_tracker=False`. `example_relib.c` is the same module in C, built
//! when rustc is missing; both must export the same symbols.
//!
//! The first three compilation-info fields are handed in by the builder from
//! `rustc -vV` of the compiler that builds this file, so the claim is true.
#![allow(non_upper_case_globals, non_snake_case)]

use std::ffi::c_void;

/// relib's `Str`: pointer and length, no terminator.
#[repr(C)]
pub struct Str {
    ptr: *const u8,
    len: usize,
}

// Str here only points at static text.
unsafe impl Sync for Str {}

const COMPILATION_INFO: &str = concat!(
    env!("RELIB_EXAMPLE_RUSTC_VERSION"),
    "|",
    env!("RELIB_EXAMPLE_RUSTC_HOST"),
    "|",
    env!("RELIB_EXAMPLE_LLVM_VERSION"),
    "|0.7.0|1"
);

#[no_mangle]
pub static __RELIB__CRATE_COMPILATION_INFO__: Str =
    Str { ptr: COMPILATION_INFO.as_ptr(), len: COMPILATION_INFO.len() };

fn abort(message: &str) -> ! {
    eprintln!("[example] {message}");
    std::process::abort()
}

// ---- public import `Imports::log(message: &str)` (convention B) ----------------------

extern "C" fn log_unset(_success: *mut bool, _message: Str) {
    abort("import Imports::log called before the host set it")
}

#[no_mangle]
pub static mut __relib__Imports_log: extern "C" fn(*mut bool, Str) = log_unset;

fn log(text: &'static str) {
    let mut ok = false;
    unsafe { __relib__Imports_log(&mut ok, Str { ptr: text.as_ptr(), len: text.len() }) };
    if !ok {
        abort("host panicked while executing import \"log\" of module, aborting")
    }
}

// ---- public exports ------------------------------------------------------------------

/// `#[relib_module::export] fn main()`.
#[no_mangle]
pub extern "C" fn __relib__main(success: *mut bool) {
    log("hello from the example module");
    unsafe { *success = true };
}

/// `Exports::add(a: i32, b: i32) -> i32` (an unboxed return).
#[no_mangle]
pub extern "C" fn __relib__Exports_add(success: *mut bool, a: i32, b: i32) -> i32 {
    unsafe { *success = true };
    a.wrapping_add(b) // relib-pure demo: the line that changes
}

// ---- the unloading protocol: internal import slots (the host writes them) -----------

extern "C" fn slot_unset() {
    abort("an internal import was called before the host set it")
}

#[no_mangle]
pub static mut __relib_____Internal___Imports____on_alloc: extern "C" fn() = slot_unset;
#[no_mangle]
pub static mut __relib_____Internal___Imports____on_cached_allocs: extern "C" fn() = slot_unset;
#[no_mangle]
pub static mut __relib_____Internal___Imports____unrecoverable: extern "C" fn() = slot_unset;
#[no_mangle]
pub static mut __relib_____Internal___Imports____eprintln: extern "C" fn() = slot_unset;
#[no_mangle]
pub static mut __relib_____Internal___Imports____is_ptr_allocated: extern "C" fn() = slot_unset;

// ---- internal exports (the host calls them) ------------------------------------------

#[repr(C)]
pub struct RawSlice {
    ptr: *const c_void,
    len: usize,
}

static mut MODULE_ID: u64 = 0;

#[no_mangle]
pub extern "C" fn __relib_____Internal___Exports____init(
    _host_owner_thread: usize,
    module: u64,
    _enable_alloc_tracker: bool,
) {
    unsafe { MODULE_ID = module };
}

/// The host hands back the allocations it tracked; this module reports none.
#[no_mangle]
pub extern "C" fn __relib_____Internal___Exports____exit(allocs: RawSlice) {
    if allocs.len != 0 {
        abort("exit: this module never reported an allocation")
    }
    let _ = allocs.ptr;
}

#[no_mangle]
pub extern "C" fn __relib_____Internal___Exports____take_cached_allocs_before_exit() {}

#[no_mangle]
pub extern "C" fn __relib_____Internal___Exports____lock_module_allocator() {}

/// The example starts no threads.
#[no_mangle]
pub extern "C" fn __relib_____Internal___Exports____spawned_threads_count() -> u64 {
    0
}

#[no_mangle]
pub extern "C" fn __relib_____Internal___Exports____run_thread_local_dtors() {}

#[no_mangle]
pub extern "C" fn __relib_____Internal___Exports____misc_cleanup() {}
