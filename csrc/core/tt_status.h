/* tt_status.h - status codes and the thread-local error message of the C core.
 *
 * Every C entry point of tflite_transfer returns a tt_status. On failure it
 * also leaves a human-readable message in a thread-local buffer that
 * tt_last_error() returns; the Python binding turns (status, message) into an
 * exception (see py_common.h for the mapping). No function in the core calls
 * exit() or abort(), and none includes Python.h.
 */
#ifndef TT_STATUS_H
#define TT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tt_status {
    TT_OK = 0,
    TT_INVALID_ARGUMENT = 1, /* bad shape, dtype, value, option       -> ValueError       */
    TT_INVALID_MODEL = 2,    /* corrupt or inconsistent model file    -> ModelFormatError */
    TT_UNSUPPORTED = 3,      /* valid input the core cannot handle    -> ValueError       */
    TT_DECODE_ERROR = 4,     /* image bytes that cannot be decoded    -> ImageDecodeError */
    TT_OUT_OF_MEMORY = 5,    /* malloc or oneDNN allocation failed    -> MemoryError      */
    TT_IO_ERROR = 6,         /* a file could not be opened or read    -> OSError          */
    TT_RUNTIME_ERROR = 7     /* oneDNN or another library failed      -> RuntimeError     */
} tt_status;

/* Records a printf-style message for the calling thread and returns `status`,
 * so that failures read `return tt_error(TT_INVALID_MODEL, "...", ...);`.
 * The message is truncated to 1023 bytes. */
tt_status tt_error(tt_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The calling thread's last message ("" if none). Valid until the next
 * tt_error() on this thread. */
const char *tt_last_error(void);

/* Clears the calling thread's message. */
void tt_clear_error(void);

/* Short name of a status ("TT_INVALID_MODEL"), never NULL. */
const char *tt_status_name(tt_status status);

#ifdef __cplusplus
}
#endif
#endif /* TT_STATUS_H */
