/* tt_arena.h - a chunked bump allocator: many small zeroed allocations, freed at once.
 *
 * Used by the model reader: a tt_model and everything it points to (tensors, ops,
 * names, dequantized constants) live in one arena, freed by tt_arena_free().
 * Not thread-safe; one owner.
 */
#ifndef TT_ARENA_H
#define TT_ARENA_H

#include <stddef.h>

typedef struct tt_arena tt_arena;

/* A new, empty arena, or NULL when out of memory. */
tt_arena *tt_arena_create(void);
/* `n` zeroed bytes aligned to 64, or NULL when out of memory. */
void *tt_arena_alloc(tt_arena *a, size_t n);
/* Frees the arena and every allocation in it; accepts NULL. */
void tt_arena_free(tt_arena *a);

#endif /* TT_ARENA_H */
