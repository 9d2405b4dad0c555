/* status.c - thread-local error messages for the C core (see tt_status.h). */
#include "core/tt_status.h"

#include <stdarg.h>
#include <stdio.h>

/* One buffer per thread: worker threads of the image pipeline report
 * errors concurrently, and the Python caller reads the message of the thread
 * that returned the status. */
static _Thread_local char tt_message[1024];

tt_status tt_error(tt_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tt_message, sizeof tt_message, fmt, ap);
    va_end(ap);
    return status;
}

const char *tt_last_error(void) { return tt_message; }

void tt_clear_error(void) { tt_message[0] = '\0'; }

const char *tt_status_name(tt_status status) {
    switch (status) {
    case TT_OK: return "TT_OK";
    case TT_INVALID_ARGUMENT: return "TT_INVALID_ARGUMENT";
    case TT_INVALID_MODEL: return "TT_INVALID_MODEL";
    case TT_UNSUPPORTED: return "TT_UNSUPPORTED";
    case TT_DECODE_ERROR: return "TT_DECODE_ERROR";
    case TT_OUT_OF_MEMORY: return "TT_OUT_OF_MEMORY";
    case TT_IO_ERROR: return "TT_IO_ERROR";
    case TT_RUNTIME_ERROR: return "TT_RUNTIME_ERROR";
    }
    return "TT_UNKNOWN_STATUS";
}
