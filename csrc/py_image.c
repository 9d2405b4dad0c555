/* py_image.c - Python bindings of the image area (stub until that area lands). */
#include "py_common.h"

int tt_py_init_image(PyObject *module) {
    (void)module;
    return 0;
}
