/* flatbuffer.c - bounds-checked flatbuffer access (see tt_flatbuffer.h). */
#include "model/tt_flatbuffer.h"

#include <string.h>

/* True when [pos, pos + n) lies inside the file. */
static bool in_file(const fb *f, size_t pos, size_t n) { return pos <= f->len && n <= f->len - pos; }

tt_status fb_bad(const fb *f, const char *what, size_t pos) {
    return tt_error(TT_INVALID_MODEL, "%s: %s (at byte %zu; the file has %zu bytes)", f->where, what, pos, f->len);
}

tt_status fb_open_table(const fb *f, size_t pos, fb_table *t) {
    if (!in_file(f, pos, 4)) return fb_bad(f, "table offset points past the end of the file", pos);
    int64_t vt = (int64_t)pos - (int64_t)(int32_t)ld32(f->buf + pos);
    if (vt < 0 || !in_file(f, (size_t)vt, 4)) return fb_bad(f, "vtable offset points outside the file", pos);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vt_size = ld16(f->buf + t->vt);
    t->tbl_size = ld16(f->buf + t->vt + 2);
    if (t->vt_size < 4 || (t->vt_size & 1) || !in_file(f, t->vt, t->vt_size))
        return fb_bad(f, "vtable has an invalid size or runs past the end of the file", t->vt);
    if (t->tbl_size < 4 || !in_file(f, pos, t->tbl_size)) return fb_bad(f, "table runs past the end of the file", pos);
    return TT_OK;
}

/* Position of field `idx` of `size` bytes, or 0 when absent (a field never sits at offset 0). */
static tt_status fb_field(const fb *f, const fb_table *t, int idx, size_t size, size_t *pos) {
    *pos = 0;
    size_t slot = 4 + 2 * (size_t)idx;
    if (slot + 2 > t->vt_size) return TT_OK;
    uint16_t off = ld16(f->buf + t->vt + slot);
    if (off == 0) return TT_OK;
    if (off < 4 || (size_t)off + size > t->tbl_size) return fb_bad(f, "field lies outside its table", t->pos);
    *pos = t->pos + off;
    return TT_OK;
}

tt_status fb_u8(const fb *f, const fb_table *t, int idx, uint8_t dflt, uint8_t *out) {
    size_t p;
    tt_status s = fb_field(f, t, idx, 1, &p);
    *out = (s == TT_OK && p) ? f->buf[p] : dflt;
    return s;
}

tt_status fb_i32(const fb *f, const fb_table *t, int idx, int32_t dflt, int32_t *out) {
    size_t p;
    tt_status s = fb_field(f, t, idx, 4, &p);
    *out = (s == TT_OK && p) ? (int32_t)ld32(f->buf + p) : dflt;
    return s;
}

tt_status fb_u64(const fb *f, const fb_table *t, int idx, uint64_t *out) {
    size_t p;
    tt_status s = fb_field(f, t, idx, 8, &p);
    *out = (s == TT_OK && p) ? ld64(f->buf + p) : 0;
    return s;
}

tt_status fb_f32(const fb *f, const fb_table *t, int idx, float dflt, float *out) {
    size_t p;
    tt_status s = fb_field(f, t, idx, 4, &p);
    if (s == TT_OK && p) {
        uint32_t u = ld32(f->buf + p);
        memcpy(out, &u, 4);
    } else {
        *out = dflt;
    }
    return s;
}

/* Follows the uoffset stored in field `idx`; *target = 0 when the field is absent. */
tt_status fb_deref(const fb *f, const fb_table *t, int idx, size_t *target) {
    size_t p;
    *target = 0;
    tt_status s = fb_field(f, t, idx, 4, &p);
    if (s != TT_OK || !p) return s;
    uint32_t u = ld32(f->buf + p);
    if (u == 0 || u > f->len - p) return fb_bad(f, "offset points past the end of the file", p);
    *target = p + u;
    return TT_OK;
}

/* Vector in field `idx`: *start = first element, *n = count (0, 0 when absent). */
tt_status fb_vector(const fb *f, const fb_table *t, int idx, size_t elem, size_t *start, uint32_t *n) {
    size_t v;
    *start = 0;
    *n = 0;
    tt_status s = fb_deref(f, t, idx, &v);
    if (s != TT_OK || !v) return s;
    if (!in_file(f, v, 4)) return fb_bad(f, "vector length lies past the end of the file", v);
    uint32_t count = ld32(f->buf + v);
    if ((size_t)count > (f->len - v - 4) / elem) return fb_bad(f, "vector runs past the end of the file", v);
    *start = v + 4;
    *n = count;
    return TT_OK;
}

/* Table element `i` of a vector of tables starting at `start`. */
tt_status fb_vector_table(const fb *f, size_t start, uint32_t i, fb_table *t) {
    size_t p = start + 4 * (size_t)i;
    uint32_t u = ld32(f->buf + p); /* in the file: the vector's extent was checked */
    if (u == 0 || u > f->len - p) return fb_bad(f, "table offset in a vector points past the end of the file", p);
    return fb_open_table(f, p + u, t);
}

/* 1 if s[0..n) is well-formed UTF-8 without NUL bytes (flatbuffer strings are UTF-8;
 * names reach Python as str, so a corrupt name must fail here, as a model error). */
static int valid_utf8(const uint8_t *s, uint32_t n) {
    uint32_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t len;
        uint32_t cp;
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return 0;
        if (len > n - i) return 0;
        for (uint32_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        i += len;
    }
    return 1;
}

/* Copies string field `idx` into the arena ("" when absent). */
tt_status fb_string(const fb *f, const fb_table *t, int idx, tt_arena *a, const char **out) {
    size_t start;
    uint32_t n;
    tt_status s = fb_vector(f, t, idx, 1, &start, &n);
    if (s != TT_OK) return s;
    if (!valid_utf8(f->buf + start, n)) return fb_bad(f, "a string is not valid UTF-8", start);
    char *str = (char *)tt_arena_alloc(a, (size_t)n + 1);
    if (!str) return tt_error(TT_OUT_OF_MEMORY, "out of memory while reading a %u-byte string", n);
    if (n) memcpy(str, f->buf + start, n);
    str[n] = '\0';
    *out = str;
    return TT_OK;
}
