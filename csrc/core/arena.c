/* arena.c - the chunked bump allocator of tt_arena.h: 1 MiB chunks (or one
 * chunk per larger request), 64-byte aligned, zeroed. */
#include "core/tt_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct tt_chunk {
    struct tt_chunk *next;
    size_t cap, used;
    _Alignas(64) unsigned char data[];
} tt_chunk;

struct tt_arena {
    tt_chunk *head; /* newest chunk first; all freed by tt_arena_free */
};

tt_arena *tt_arena_create(void) { return (tt_arena *)calloc(1, sizeof(tt_arena)); }

/* Returns `n` zeroed bytes aligned to 64, or NULL when out of memory. */
void *tt_arena_alloc(tt_arena *a, size_t n) {
    size_t need = (n + 63) & ~(size_t)63;
    if (need < n) return NULL;
    tt_chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > ((size_t)1 << 20) ? need : ((size_t)1 << 20);
        if (cap > SIZE_MAX - sizeof(tt_chunk)) return NULL;
        c = (tt_chunk *)aligned_alloc(64, (sizeof(tt_chunk) + cap + 63) & ~(size_t)63);
        if (!c) return NULL;
        c->next = a->head;
        c->cap = cap;
        c->used = 0;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

void tt_arena_free(tt_arena *a) {
    if (!a) return;
    tt_chunk *c = a->head;
    while (c) {
        tt_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}
