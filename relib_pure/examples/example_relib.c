/* A relib-style module written in C: the bundled example that
 * `relib-pure inspect --example` reads on a machine with no compiler.
 *
 * It carries the symbols a relib 0.7 module built without the `unloading`
 * feature exports (shared/relib-abi.md §1-§2): the compilation-info Str, the
 * exportify'd `main`, one public export of trait `Exports` and one public
 * import slot of trait `Imports`, all with calling convention B
 * (`R f(bool *success, args...)`). The unloading flag is 0 because a module
 * built with it would also export the internal allocator-tracking protocol,
 * which this example deliberately leaves out.
 *
 * Regenerate the shipped binary with `python3 tools/make_example.py`.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

/* relib's `Str`: a pointer and a length, no NUL terminator counted. */
typedef struct {
    const char *ptr;
    size_t len;
} Str;

#define COMPILATION_INFO \
    "1.95.0 (59807616e 2026-04-14)|x86_64-unknown-linux-gnu|22.1.2|0.7.0|0"

static const char compilation_info_text[] = COMPILATION_INFO;

/* const + a pointer member puts this in .data.rel.ro with an
 * R_X86_64_RELATIVE relocation on `ptr`, exactly where rustc puts relib's. */
EXPORT const Str __RELIB__CRATE_COMPILATION_INFO__ = {
    compilation_info_text, sizeof(COMPILATION_INFO) - 1,
};

/* Import `Imports::log(message: &str)`. The host overwrites the slot with its
 * own function before calling anything; until then it holds a placeholder
 * that aborts, like relib's `unreachable!()` body. */
typedef void (*log_fn)(bool *success, Str message);

static void log_placeholder(bool *success, Str message) {
    (void)success;
    (void)message;
    fputs("[example] import Imports::log called before the host set it\n", stderr);
    abort();
}

EXPORT log_fn __relib__Imports_log = log_placeholder;

static void call_log(const char *text, size_t len) {
    bool ok = false;
    Str message = {text, len};
    __relib__Imports_log(&ok, message);
    if (!ok) {
        fputs("[relib] host panicked while executing import \"log\" of module, aborting\n",
              stderr);
        abort();
    }
}

/* `#[relib_module::export] fn main()`: unit return, so nothing is boxed. */
EXPORT void __relib__main(bool *success) {
    static const char hello[] = "hello from the example module";
    call_log(hello, sizeof(hello) - 1);
    *success = true;
}

/* `Exports::add(a: i32, b: i32) -> i32`: i32 is a stable-copy type, returned
 * directly. Wrapping like Rust's i32::wrapping_add. */
EXPORT int32_t __relib__Exports_add(bool *success, int32_t a, int32_t b) {
    *success = true;
    return (int32_t)((uint32_t)a + (uint32_t)b);
}
