/* The example module `relib-pure demo` and `relib-pure inspect --example` build and use,
 * in C: built when rustc is missing. `example_relib.rs` is the same module in Rust and
 * both must export the same symbols (tools/make_example.py --check).
 *
 * A relib 0.7 module with unloading, following shared/relib-abi.md §1-§4: the
 * compilation-info Str, the exportify'd `main`, one public export of trait `Exports`,
 * one public import slot of trait `Imports` (calling convention B:
 * `R f(bool *success, args...)`), and the internal exports and import slots of the
 * unloading protocol. Its allocations are malloc's, not relib's tracker: load it with
 * enable_alloc_tracker=False.
 *
 * The builder defines EXAMPLE_COMPILATION_INFO. No rustc built this file, so the
 * rustc field says that instead of naming a rustc version.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

#ifndef EXAMPLE_COMPILATION_INFO
#error "build with -DEXAMPLE_COMPILATION_INFO=\"...\" (relib_pure.examples.build_example does)"
#endif

/* relib's `Str`: a pointer and a length, no NUL terminator counted. */
typedef struct {
    const char *ptr;
    size_t len;
} Str;

static const char compilation_info_text[] = EXAMPLE_COMPILATION_INFO;

/* const + a pointer member puts this in .data.rel.ro with an
 * R_X86_64_RELATIVE relocation on `ptr`, exactly where rustc puts relib's. */
EXPORT const Str __RELIB__CRATE_COMPILATION_INFO__ = {
    compilation_info_text, sizeof(compilation_info_text) - 1,
};

static void fail(const char *message) {
    fprintf(stderr, "[example] %s\n", message);
    abort();
}

/* ---- public import `Imports::log(message: &str)` ---------------------------------- */

typedef void (*log_fn)(bool *success, Str message);

static void log_unset(bool *success, Str message) {
    (void)success;
    (void)message;
    fail("import Imports::log called before the host set it");
}

EXPORT log_fn __relib__Imports_log = log_unset;

static void call_log(const char *text, size_t len) {
    bool ok = false;
    Str message = {text, len};
    __relib__Imports_log(&ok, message);
    if (!ok)
        fail("host panicked while executing import \"log\" of module, aborting");
}

/* ---- public exports --------------------------------------------------------------- */

/* `#[relib_module::export] fn main()`: unit return, so nothing is boxed. */
EXPORT void __relib__main(bool *success) {
    static const char hello[] = "hello from the example module";
    call_log(hello, sizeof(hello) - 1);
    *success = true;
}

/* `Exports::add(a: i32, b: i32) -> i32`, wrapping like Rust's i32::wrapping_add. */
EXPORT int32_t __relib__Exports_add(bool *success, int32_t a, int32_t b) {
    *success = true;
    return (int32_t)((uint32_t)a + (uint32_t)b); /* relib-pure demo: the line that changes */
}

/* ---- the unloading protocol: internal import slots (the host writes them) --------- */

typedef void (*slot_fn)(void);

static void slot_unset(void) { fail("an internal import was called before the host set it"); }

EXPORT slot_fn __relib_____Internal___Imports____on_alloc = slot_unset;
EXPORT slot_fn __relib_____Internal___Imports____on_cached_allocs = slot_unset;
EXPORT slot_fn __relib_____Internal___Imports____unrecoverable = slot_unset;
EXPORT slot_fn __relib_____Internal___Imports____eprintln = slot_unset;
EXPORT slot_fn __relib_____Internal___Imports____is_ptr_allocated = slot_unset;

/* ---- internal exports (the host calls them) --------------------------------------- */

typedef struct {
    const void *ptr;
    size_t len;
} RawSlice;

static uint64_t module_id;

EXPORT void __relib_____Internal___Exports____init(size_t host_owner_thread, uint64_t module,
                                                   bool enable_alloc_tracker) {
    (void)host_owner_thread;
    (void)enable_alloc_tracker;
    module_id = module;
}

/* The host hands back the allocations it tracked; this module reports none. */
EXPORT void __relib_____Internal___Exports____exit(RawSlice allocs) {
    if (allocs.len != 0)
        fail("exit: this module never reported an allocation");
}

EXPORT void __relib_____Internal___Exports____take_cached_allocs_before_exit(void) {}

EXPORT void __relib_____Internal___Exports____lock_module_allocator(void) {}

/* The example starts no threads. */
EXPORT uint64_t __relib_____Internal___Exports____spawned_threads_count(void) { return 0; }

EXPORT void __relib_____Internal___Exports____run_thread_local_dtors(void) {}

EXPORT void __relib_____Internal___Exports____misc_cleanup(void) {}
