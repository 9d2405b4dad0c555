/* py_common.h - shared by the binding files (py_*.c) and only them.
 *
 * The binding layer is the only code that includes Python.h and NumPy. Each
 * area of the core has one binding file that registers its functions and types
 * on the module from tt_py_init_<area>(); module.c owns the module definition,
 * its state and the status -> exception mapping.
 */
#ifndef TT_PY_COMMON_H
#define TT_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL tt_ARRAY_API
#ifndef TT_MODULE_C
#define NO_IMPORT_ARRAY /* import_array() runs once, in module.c */
#endif
#include <numpy/arrayobject.h>

#include "core/tt_status.h"

/* Module state (PEP 489 multi-phase init): no C globals hold Python objects. */
typedef struct tt_module_state {
    PyObject *ModelFormatError; /* subclass of ValueError: corrupt/unsupported model file */
    PyObject *ImageDecodeError; /* subclass of ValueError: undecodable image */
    PyObject *Model;            /* heap type, py_model.c */
    PyObject *ThreadPool;       /* heap type, py_image.c */
    PyObject *Loader;           /* heap type, py_image.c */
    PyObject *DensePlan;        /* heap type, py_train.c */
    PyObject *TrainEngine;      /* heap type, py_engine.c */
} tt_module_state;

extern PyModuleDef tt_module_def;

/* State of the module object `module` (never NULL for our module). */
tt_module_state *tt_get_state(PyObject *module);

/* State of the module that defines heap type `type` (NULL + exception if not ours). */
tt_module_state *tt_get_state_from_type(PyTypeObject *type);

/* Sets the Python exception for a failed status from the thread's
 * tt_last_error() message and returns NULL:
 *   TT_INVALID_ARGUMENT, TT_UNSUPPORTED -> ValueError
 *   TT_INVALID_MODEL                    -> ModelFormatError (ValueError)
 *   TT_DECODE_ERROR                     -> ImageDecodeError (ValueError)
 *   TT_OUT_OF_MEMORY                    -> MemoryError
 *   TT_IO_ERROR                         -> OSError
 *   TT_RUNTIME_ERROR (and anything else)-> RuntimeError
 * `module` may be NULL, then the two project exceptions fall back to ValueError. */
PyObject *tt_py_raise(PyObject *module, tt_status status);

/* A new tuple of Python ints from shape[rank] (NULL + exception on failure). */
PyObject *tt_py_shape_tuple(int32_t rank, const int64_t *shape);

/* Each area registers its functions/types here; 0 on success, -1 with an exception set. */
int tt_py_init_model(PyObject *module); /* py_model.c */
int tt_py_init_image(PyObject *module); /* py_image.c */
int tt_py_init_train(PyObject *module); /* py_train.c */
int tt_py_init_engine(PyObject *module); /* py_engine.c (after py_model.c: needs the Model type) */

#endif /* TT_PY_COMMON_H */
