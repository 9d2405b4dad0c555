/* py_train.c - Python bindings of the train area (stub until that area lands). */
#include "py_common.h"

int tt_py_init_train(PyObject *module) {
    (void)module;
    return 0;
}
