/* Baseline for tools/bench_relib.py: relib's host side with the allocation
 * tracker's callbacks written in C (an open-addressing ptr -> layout map),
 * driving the same module through the same protocol steps as relib_pure
 * (relib 0.7 generation: init with the tracker flag, misc_cleanup).
 *
 * usage: bench_relib_host MODULE.so N KEEP_EVERY [EXPORT [PEAK_LIVE]]
 * prints one JSON object: work_s, unload_s, live_before_exit, freed_bytes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { size_t size, align; } Layout;
typedef struct { void *ptr; size_t len; } Slice;
typedef struct { uint32_t tag; uint32_t pad; uintptr_t ptr; Layout layout; } Op;
typedef struct { uintptr_t ptr; Layout layout; } Alloc;

/* linear probing, backward-shift deletion; key 0 = empty */
static Alloc *table;
static size_t mask, live;

static size_t slot_of(uintptr_t p) {
    uint64_t h = (uint64_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 29)) & mask;
}

static void put(uintptr_t p, Layout l);

/* doubles the table at a load factor of 1/2; with a right PEAK_LIVE hint it never
 * runs, it only keeps a wrong hint from breaking the table */
static void grow(void) {
    Alloc *old = table;
    size_t old_slots = mask + 1;
    mask = old_slots * 2 - 1;
    table = calloc(mask + 1, sizeof(Alloc));
    if (!table) { fprintf(stderr, "out of memory\n"); abort(); }
    live = 0;
    for (size_t i = 0; i < old_slots; i++)
        if (old[i].ptr) put(old[i].ptr, old[i].layout);
    free(old);
}

static void put(uintptr_t p, Layout l) {
    if (2 * (live + 1) > mask + 1) grow();
    size_t i = slot_of(p);
    while (table[i].ptr && table[i].ptr != p) i = (i + 1) & mask;
    if (!table[i].ptr) live++;
    table[i].ptr = p;
    table[i].layout = l;
}

static void del(uintptr_t p) {
    size_t i = slot_of(p);
    while (table[i].ptr && table[i].ptr != p) i = (i + 1) & mask;
    if (!table[i].ptr) return; /* unknown dealloc: ignored, as relib does */
    live--;
    size_t j = i;
    for (;;) {
        table[i].ptr = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!table[j].ptr) return;
            size_t k = slot_of(table[j].ptr);
            /* move j back to i unless its home k lies cyclically in (i, j] */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;
            break;
        }
        table[i] = table[j];
        i = j;
    }
}

static void on_alloc(uint64_t id, void *p, Layout l) { (void)id; put((uintptr_t)p, l); }

static void on_cached_allocs(uint64_t id, Slice ops) {
    (void)id;
    const Op *op = ops.ptr;
    for (size_t i = 0; i < ops.len; i++) {
        if (op[i].tag == 0) put(op[i].ptr, op[i].layout);
        else del(op[i].ptr);
    }
}

static void unrecoverable(uint64_t id, Slice msg) {
    fprintf(stderr, "[module id: %llu] something unrecoverable happened: %.*s\naborting\n",
            (unsigned long long)id, (int)msg.len, (const char *)msg.ptr);
    abort();
}

static bool is_ptr_allocated(uint64_t id, void *p) {
    (void)id;
    size_t i = slot_of((uintptr_t)p);
    while (table[i].ptr && table[i].ptr != (uintptr_t)p) i = (i + 1) & mask;
    return table[i].ptr != 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define INT "__relib_____Internal___Imports____"
#define EXP "__relib_____Internal___Exports____"

static void *need(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) { fprintf(stderr, "missing %s\n", name); exit(2); }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s MODULE N KEEP_EVERY [EXPORT [PEAK_LIVE]]\n", argv[0]); return 2; }
    const char *export_name = argc > 4 ? argv[4] : "__relib__Exports_bench_allocs";
    uint64_t n = strtoull(argv[2], 0, 10), keep = strtoull(argv[3], 0, 10);
    /* presized for the workload's peak live count (load factor <= 1/4): C's best
     * case, no rehash, and no pages faulted in beyond what the workload needs (a
     * fixed 2^22 slots made runs with a small live set pay for 100 MB) */
    uint64_t peak = argc > 5 ? strtoull(argv[5], 0, 10) : n;
    size_t slots = 1u << 12;
    while (slots < 4 * (peak + 64)) slots *= 2;
    mask = slots - 1;
    table = calloc(mask + 1, sizeof(Alloc));
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    *(void **)need(h, INT "on_alloc") = (void *)on_alloc;
    *(void **)need(h, INT "on_cached_allocs") = (void *)on_cached_allocs;
    *(void **)need(h, INT "unrecoverable") = (void *)unrecoverable;
    *(void **)need(h, INT "is_ptr_allocated") = (void *)is_ptr_allocated;
    ((void (*)(size_t, uint64_t, bool))need(h, EXP "init"))((size_t)pthread_self(), 1, true);

    uint64_t (*bench)(bool *, uint64_t, uint64_t) = need(h, export_name);
    bool ok = false;
    double t0 = now();
    uint64_t kept = bench(&ok, n, keep);
    double t1 = now();
    if (!ok) { fprintf(stderr, "bench_allocs panicked\n"); return 1; }

    ((void (*)(void))need(h, EXP "lock_module_allocator"))();
    ((void (*)(void))need(h, EXP "run_thread_local_dtors"))();
    ((void (*)(void))need(h, EXP "misc_cleanup"))();
    ((void (*)(void))need(h, EXP "take_cached_allocs_before_exit"))();
    Alloc *list = malloc((live ? live : 1) * sizeof(Alloc));
    size_t count = 0, bytes = 0;
    for (size_t i = 0; i <= mask; i++)
        if (table[i].ptr) { list[count++] = table[i]; bytes += table[i].layout.size; }
    Slice s = { count ? (void *)list : (void *)8, count };
    ((void (*)(Slice))need(h, EXP "exit"))(s);
    dlclose(h);
    double t2 = now();
    printf("{\"work_s\": %.6f, \"unload_s\": %.6f, \"kept\": %llu, \"freed_allocations\": %zu, "
           "\"freed_bytes\": %zu}\n", t1 - t0, t2 - t1, (unsigned long long)kept, count, bytes);
    return 0;
}
