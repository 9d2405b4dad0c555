/* image_decode.c - file reading and decoding to 8-bit RGB with stb_image.
 *
 * stb_image is compiled here (the one STB_IMAGE_IMPLEMENTATION of the project) for
 * JPEG (baseline + progressive), PNG, BMP and GIF only: fewer parsers of untrusted bytes.
 * Thread safety: with C11 stb_image keeps its failure reason in a _Thread_local
 * (STBI_THREAD_LOCAL), and we never call the global setters (flip on load, unpremultiply,
 * iphone conversion), so worker threads decode concurrently. Files are read by us
 * (STBI_NO_STDIO) so sizes are checked before stb_image sees the bytes. */
#include "image/tt_image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_FAILURE_USERMSG
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#if !defined(STBI_THREAD_LOCAL)
#error "stb_image needs STBI_THREAD_LOCAL (C11 _Thread_local) for a per-thread failure reason"
#endif

tt_status tt_image_read_file(const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    /* open() + fstat() rather than fopen(): a FIFO or device named like an image in a user's folder
     * must fail at once instead of blocking a worker thread (O_NONBLOCK) or reading forever. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return tt_error(TT_IO_ERROR, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tt_error(TT_IO_ERROR, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tt_error(TT_IO_ERROR, "'%s' is not a regular file", path);
    }
    if ((long long)st.st_size > TT_IMAGE_MAX_FILE_BYTES) {
        close(fd);
        return tt_error(TT_IO_ERROR, "'%s' is %lld bytes, larger than the %lld-byte limit for an image file", path,
                        (long long)st.st_size, (long long)TT_IMAGE_MAX_FILE_BYTES);
    }
    const size_t len = (size_t)st.st_size;
    uint8_t *buf = (uint8_t *)malloc(len > 0 ? len : 1);
    if (!buf) {
        close(fd);
        return tt_error(TT_OUT_OF_MEMORY, "out of memory reading '%s' (%zu bytes)", path, len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return tt_error(TT_IO_ERROR, "cannot read '%s': %s", path, strerror(e));
        }
        if (r == 0) break; /* the file shrank since fstat: decode what is there */
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = got;
    return TT_OK;
}

/* Walks the markers of a JPEG the way stb_image reads them and rejects Huffman tables (DHT) that
 * declare more than 256 symbols. stb_image 2.27 (Debian's libstb, git 2022-09-08) lacks that
 * check (added upstream in 2.28) and then writes past its 256-entry symbol arrays: found by our
 * UBSan fuzzing of bit-flipped JPEGs. Segment lengths are followed as stb follows them; scan data
 * is skipped byte-wise to the next marker (FF 00 stuffing and RSTn are not markers). Tables that
 * run past the end of their segment are checked with the bytes stb would read (0 past EOF). */
static int jpeg_dht_ok(const uint8_t *d, size_t n) {
    if (n < 2 || d[0] != 0xFF || d[1] != 0xD8) return 1; /* not a JPEG: nothing to check */
    size_t i = 2;
    while (i + 1 < n) {
        if (d[i] != 0xFF) {
            i++;
            continue;
        }
        const uint8_t m = d[i + 1];
        if (m == 0xFF || m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            i += (m == 0xFF) ? 1 : 2;
            continue;
        }
        if (m == 0xD9) break; /* EOI */
        if (i + 3 >= n) break;
        const size_t len = ((size_t)d[i + 2] << 8) | d[i + 3];
        if (m == 0xC4 && len >= 2) {
            size_t p = i + 4;
            long remaining = (long)len - 2;
            while (remaining > 0) {
                size_t count = 0;
                for (size_t k = 1; k <= 16; k++) count += p + k < n ? d[p + k] : 0;
                if (count > 256) return 0;
                p += 17 + count;
                remaining -= 17 + (long)count;
            }
        }
        i += 2 + len;
    }
    return 1;
}

tt_status tt_image_info(const uint8_t *data, size_t size, int *height, int *width) {
    *height = *width = 0;
    if (size == 0) return tt_error(TT_DECODE_ERROR, "empty file (0 bytes)");
    if (size > INT_MAX) return tt_error(TT_DECODE_ERROR, "encoded image of %zu bytes is too large", size);
    if (!jpeg_dht_ok(data, size))
        return tt_error(TT_DECODE_ERROR, "corrupt JPEG: a Huffman table (DHT) declares more than 256 symbols");
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(data, (int)size, &w, &h, &comp)) {
        const char *why = stbi_failure_reason();
        return tt_error(TT_DECODE_ERROR, "not a decodable JPEG/PNG/BMP/GIF image (stb_image: %s)",
                        why ? why : "unknown reason");
    }
    *height = h;
    *width = w;
    return TT_OK;
}

/* Dimensions declared by a PNG/BMP/GIF header, read directly: stb_image's info call rejects some
 * huge headers itself (with a generic reason once it has tried every format), and we want the
 * max_pixels message. Returns 1 if recognised. JPEG sizes come from stbi_info (<= 65535 each). */
static int sniff_size(const uint8_t *d, size_t n, int64_t *h, int64_t *w) {
    if (n >= 24 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(d + 12, "IHDR", 4) == 0) {
        *w = ((int64_t)d[16] << 24) | ((int64_t)d[17] << 16) | ((int64_t)d[18] << 8) | d[19];
        *h = ((int64_t)d[20] << 24) | ((int64_t)d[21] << 16) | ((int64_t)d[22] << 8) | d[23];
        return 1;
    }
    if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
        int32_t ww = (int32_t)((uint32_t)d[18] | ((uint32_t)d[19] << 8) | ((uint32_t)d[20] << 16) | ((uint32_t)d[21] << 24));
        int32_t hh = (int32_t)((uint32_t)d[22] | ((uint32_t)d[23] << 8) | ((uint32_t)d[24] << 16) | ((uint32_t)d[25] << 24));
        uint32_t hdr = (uint32_t)d[14] | ((uint32_t)d[15] << 8) | ((uint32_t)d[16] << 16) | ((uint32_t)d[17] << 24);
        if (hdr == 12) return 0; /* OS/2 BMP: 16-bit sizes, stb_image handles it */
        *w = ww < 0 ? -(int64_t)ww : ww;
        *h = hh < 0 ? -(int64_t)hh : hh;
        return 1;
    }
    if (n >= 10 && memcmp(d, "GIF8", 4) == 0) {
        *w = (int64_t)d[6] | ((int64_t)d[7] << 8);
        *h = (int64_t)d[8] | ((int64_t)d[9] << 8);
        return 1;
    }
    return 0;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Truncated BMP and GIF files: stb_image reads zeros past the end of the buffer and returns an
 * image whose missing part is black, without an error (JPEG and PNG stop with "Corrupt ..."). Like
 * Pillow (without LOAD_TRUNCATED_IMAGES) and TensorFlow's decoders we refuse them: this checks that
 * the bytes the first image needs are present. BMP (uncompressed or bit fields, the kinds stb
 * decodes): offset of the pixels + row stride x (|height| - 1) + the last row without its padding.
 * GIF: the blocks are walked up to the end of the first image's LZW data (its zero-length
 * sub-block), the frame stb_image decodes. Other formats and layouts stb rejects itself: 0.
 * Returns 1 and sets the thread's message if truncated, else 0.
 * d: (n,) the encoded file. */
static int bmp_gif_truncated(const uint8_t *d, size_t n) {
    if (n >= 30 && d[0] == 'B' && d[1] == 'M') {
        const uint64_t offset = le32(d + 10), hdr = le32(d + 14);
        uint64_t w, h, bpp;
        if (hdr == 12) { /* OS/2 BITMAPCOREHEADER: 16-bit sizes, no compression */
            w = (uint64_t)d[18] | ((uint64_t)d[19] << 8);
            h = (uint64_t)d[20] | ((uint64_t)d[21] << 8);
            bpp = (uint64_t)d[24] | ((uint64_t)d[25] << 8);
        } else {
            if (n < 34) return 0;
            const uint32_t compression = le32(d + 30);
            if (compression != 0 && compression != 3 && compression != 6) return 0; /* RLE etc.: stb refuses */
            const int32_t sw = (int32_t)le32(d + 18), sh = (int32_t)le32(d + 22);
            w = sw < 0 ? (uint64_t)(-(int64_t)sw) : (uint64_t)sw;
            h = sh < 0 ? (uint64_t)(-(int64_t)sh) : (uint64_t)sh;
            bpp = (uint64_t)d[28] | ((uint64_t)d[29] << 8);
        }
        if (w == 0 || h == 0 || bpp == 0 || bpp > 32) return 0; /* stb_image rejects these itself */
        const uint64_t stride = (w * bpp + 31) / 32 * 4, last = (w * bpp + 7) / 8;
        /* w < 2^32, bpp <= 32, h < 2^32: stride * (h - 1) < 2^66 could overflow; compare by division. */
        if (h - 1 > (UINT64_MAX - offset - last) / stride || offset + stride * (h - 1) + last > n) {
            tt_error(TT_DECODE_ERROR,
                     "truncated BMP: the header declares %llux%llu pixels at %llu bits per pixel, pixel data from "
                     "byte %llu, but the file ends at byte %zu",
                     (unsigned long long)w, (unsigned long long)h, (unsigned long long)bpp,
                     (unsigned long long)offset, n);
            return 1;
        }
        return 0;
    }
    if (n >= 13 && memcmp(d, "GIF8", 4) == 0) {
        size_t p = 13;
        if (d[10] & 0x80) p += (size_t)3 << ((d[10] & 7) + 1); /* global colour table */
        for (;;) {
            if (p >= n) break;
            const uint8_t b = d[p];
            int image = 0;
            if (b == 0x21) { /* extension: label, then sub-blocks */
                p += 2;
            } else if (b == 0x2C) { /* image descriptor (10 bytes), local colour table, LZW code size */
                if (p + 10 > n) break;
                const uint8_t flags = d[p + 9];
                p += 10;
                if (flags & 0x80) p += (size_t)3 << ((flags & 7) + 1);
                p += 1;
                image = 1;
            } else {
                return 0; /* trailer before any image, or not a block: stb_image decides */
            }
            for (;;) { /* sub-blocks: a length byte, that many bytes; a zero length ends them */
                if (p >= n) goto truncated;
                const size_t len = d[p];
                p += 1 + len;
                if (len == 0) break;
            }
            if (image) return 0;
        }
    truncated:
        tt_error(TT_DECODE_ERROR, "truncated GIF: the file (%zu bytes) ends inside the first image's blocks", n);
        return 1;
    }
    return 0;
}

tt_status tt_image_decode(const uint8_t *data, size_t size, int64_t max_pixels, uint8_t **pixels, int *height,
                          int *width) {
    *pixels = NULL;
    *height = *width = 0;
    int64_t sh = 0, sw = 0;
    if (max_pixels > 0 && sniff_size(data, size, &sh, &sw) && sh * sw > max_pixels)
        return tt_error(TT_DECODE_ERROR,
                        "header declares %lldx%lld pixels (%lld), more than max_pixels=%lld; refused before decoding",
                        (long long)sw, (long long)sh, (long long)(sh * sw), (long long)max_pixels);
    int h = 0, w = 0;
    tt_status s = tt_image_info(data, size, &h, &w);
    if (s != TT_OK) return s;
    if (h <= 0 || w <= 0) return tt_error(TT_DECODE_ERROR, "header declares an empty image (%dx%d)", w, h);
    if (bmp_gif_truncated(data, size)) return TT_DECODE_ERROR;
    if (max_pixels > 0 && (int64_t)h * (int64_t)w > max_pixels)
        return tt_error(TT_DECODE_ERROR,
                        "header declares %dx%d pixels (%lld), more than max_pixels=%lld; refused before decoding",
                        w, h, (long long)h * w, (long long)max_pixels);
    int dw = 0, dh = 0, comp = 0;
    /* req_comp=3: stb converts gray -> RGB by replication and drops alpha; 16-bit -> 8-bit by v >> 8. */
    stbi_uc *img = stbi_load_from_memory(data, (int)size, &dw, &dh, &comp, 3);
    if (!img) {
        const char *why = stbi_failure_reason();
        return tt_error(TT_DECODE_ERROR, "cannot decode the image (stb_image: %s)", why ? why : "unknown reason");
    }
    if (dw <= 0 || dh <= 0 || (max_pixels > 0 && (int64_t)dh * dw > max_pixels)) {
        /* A GIF frame may differ from the info header; enforce the limit on what was decoded too. */
        stbi_image_free(img);
        return tt_error(TT_DECODE_ERROR, "decoded image of %dx%d pixels is empty or exceeds max_pixels=%lld", dw,
                        dh, (long long)max_pixels);
    }
    *pixels = img;
    *height = dh;
    *width = dw;
    return TT_OK;
}

void tt_image_free(uint8_t *pixels) {
    if (pixels) stbi_image_free(pixels);
}
