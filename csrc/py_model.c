/* py_model.c - Python bindings of the model area (stub until that area lands). */
#include "py_common.h"

int tt_py_init_model(PyObject *module) {
    (void)module;
    return 0;
}
