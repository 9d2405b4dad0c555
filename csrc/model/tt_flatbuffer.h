/* tt_flatbuffer.h - bounds-checked reading of a flatbuffer (the reader's and
 * the op parsers' only access to file bytes).
 *
 * Layout (little-endian):
 *   table at T:   int32 soffset; vtable at T - soffset
 *   vtable at V:  uint16 vtable_bytes, uint16 table_bytes, uint16 field_offset[]
 *   field i:      at T + field_offset[i] (0 = absent -> schema default)
 *   offset field: uint32 u at P -> target P + u (tables, vectors, strings)
 *   vector at X:  uint32 count, then elements;  string: vector of bytes
 * Every function checks offsets and lengths against the file size and fails
 * with TT_INVALID_MODEL naming f->where; none reads outside [buf, buf + len).
 */
#ifndef TT_FLATBUFFER_H
#define TT_FLATBUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tt_arena.h"
#include "core/tt_status.h"

typedef struct fb {
    const uint8_t *buf; /* [len] the file */
    size_t len;
    char where[160];    /* what is being parsed, for messages ("subgraph 0, tensor 12") */
} fb;

typedef struct fb_table {
    size_t pos;         /* table start */
    size_t vt;          /* vtable start */
    uint16_t vt_size;   /* bytes of vtable */
    uint16_t tbl_size;  /* bytes of table inline data */
} fb_table;

static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }

/* Error at byte `pos`: "<where>: <what> (at byte pos; the file has len bytes)". */
tt_status fb_bad(const fb *f, const char *what, size_t pos);
/* Opens the table at `pos` (checks it and its vtable). */
tt_status fb_open_table(const fb *f, size_t pos, fb_table *t);
/* Scalar field `idx` of table t, or `dflt` when absent. */
tt_status fb_u8(const fb *f, const fb_table *t, int idx, uint8_t dflt, uint8_t *out);
tt_status fb_i32(const fb *f, const fb_table *t, int idx, int32_t dflt, int32_t *out);
tt_status fb_u64(const fb *f, const fb_table *t, int idx, uint64_t *out);
tt_status fb_f32(const fb *f, const fb_table *t, int idx, float dflt, float *out);
/* Target of offset field `idx` (0 when absent). */
tt_status fb_deref(const fb *f, const fb_table *t, int idx, size_t *target);
/* Vector field `idx` of `elem`-byte elements: *start = first element, *n = count (0, 0 when absent). */
tt_status fb_vector(const fb *f, const fb_table *t, int idx, size_t elem, size_t *start, uint32_t *n);
/* Table element `i` of a vector of tables starting at `start`. */
tt_status fb_vector_table(const fb *f, size_t start, uint32_t i, fb_table *t);
/* Copies string field `idx` into the arena ("" when absent); fails on invalid UTF-8. */
tt_status fb_string(const fb *f, const fb_table *t, int idx, tt_arena *a, const char **out);

#endif /* TT_FLATBUFFER_H */
