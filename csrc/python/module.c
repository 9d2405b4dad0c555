/* module.c - the extension module tflite_transfer._core: definition, state,
 * exception types, and the tt_status -> Python exception mapping.
 * Functions of each area are registered by py_model.c, py_image.c, py_train.c. */
#define TT_MODULE_C
#include "python/py_common.h"

#include <dnnl.h>
#include <math.h>

#include "core/tt_threads.h"
#include "engine/tt_engine.h"

tt_module_state *tt_get_state(PyObject *module) { return (tt_module_state *)PyModule_GetState(module); }

tt_module_state *tt_get_state_from_type(PyTypeObject *type) {
    PyObject *module = PyType_GetModuleByDef(type, &tt_module_def);
    return module ? tt_get_state(module) : NULL;
}

PyObject *tt_py_shape_tuple(int32_t rank, const int64_t *shape) {
    PyObject *t = PyTuple_New(rank);
    for (int32_t d = 0; t && d < rank; d++) {
        PyObject *v = PyLong_FromLongLong(shape[d]);
        if (!v) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, d, v);
    }
    return t;
}

PyObject *tt_py_raise(PyObject *module, tt_status status) {
    const char *msg = tt_last_error();
    if (msg[0] == '\0') msg = tt_status_name(status);
    tt_module_state *st = module ? tt_get_state(module) : NULL;
    PyObject *type;
    switch (status) {
    case TT_INVALID_ARGUMENT:
    case TT_UNSUPPORTED: type = PyExc_ValueError; break;
    case TT_INVALID_MODEL: type = st ? st->ModelFormatError : PyExc_ValueError; break;
    case TT_DECODE_ERROR: type = st ? st->ImageDecodeError : PyExc_ValueError; break;
    case TT_OUT_OF_MEMORY: type = PyExc_MemoryError; break;
    case TT_IO_ERROR: type = PyExc_OSError; break;
    default: type = PyExc_RuntimeError; break;
    }
    PyErr_SetString(type, msg);
    tt_clear_error();
    return NULL;
}

static PyObject *py_onednn_version(PyObject *module, PyObject *Py_UNUSED(args)) {
    (void)module;
    const dnnl_version_t *v = dnnl_version();
    return Py_BuildValue("(iiis)", v->major, v->minor, v->patch, v->hash);
}

static PyObject *py_set_num_threads(PyObject *module, PyObject *arg) {
    (void)module;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > 4096) {
        PyErr_Format(PyExc_ValueError, "`n` must be an int in [1, 4096]. Received: n=%ld", n);
        return NULL;
    }
    /* oneDNN (GNU OpenMP build) takes its thread count from OpenMP; the process-wide
     * setting reaches every thread that runs an engine (core/tt_threads.h). */
    tt_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *module, PyObject *Py_UNUSED(args)) {
    (void)module;
    return PyLong_FromLong(tt_get_num_threads());
}

static PyObject *py_has_bf16(PyObject *module, PyObject *Py_UNUSED(args)) {
    (void)module;
    return PyBool_FromLong(tt_cpu_has_bf16());
}

static PyObject *py_has_vnni(PyObject *module, PyObject *Py_UNUSED(args)) {
    (void)module;
    return PyBool_FromLong(tt_cpu_has_vnni());
}

static PyObject *py_cpu_isa(PyObject *module, PyObject *Py_UNUSED(args)) {
    (void)module;
    return PyUnicode_FromString(tt_cpu_isa_name());
}

/* TFLite's integer arithmetic of dtype="int8_tflite", for tests against a NumPy transcription. */
static PyObject *py_quantize_multiplier(PyObject *module, PyObject *arg) {
    (void)module;
    double real = PyFloat_AsDouble(arg);
    if (real == -1.0 && PyErr_Occurred()) return NULL;
    if (!(real >= 0.0) || !isfinite(real)) {
        PyErr_Format(PyExc_ValueError, "`real` must be a finite number >= 0. Received: real=%R", arg);
        return NULL;
    }
    int32_t m, sh;
    tt_quantize_multiplier(real, &m, &sh);
    return Py_BuildValue("(ii)", (int)m, (int)sh);
}

static PyObject *py_mean_multiplier(PyObject *module, PyObject *args) {
    (void)module;
    double real;
    long long count;
    if (!PyArg_ParseTuple(args, "dL", &real, &count)) return NULL;
    if (!(real > 0.0) || !isfinite(real) || count < 1 || count > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "`real` must be finite > 0 and `count` in [1, 2^31). Received: real=%g, "
                     "count=%lld", real, count);
        return NULL;
    }
    int32_t m, sh;
    tt_mean_multiplier(real, (int64_t)count, &m, &sh);
    return Py_BuildValue("(ii)", (int)m, (int)sh);
}

static PyObject *py_multiply_by_quantized_multiplier(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *xo;
    int m, sh;
    if (!PyArg_ParseTuple(args, "Oii", &xo, &m, &sh)) return NULL;
    if (!PyArray_Check(xo) || PyArray_TYPE((PyArrayObject *)xo) != NPY_INT32) {
        PyErr_SetString(PyExc_TypeError, "`x` must be an int32 ndarray");
        return NULL;
    }
    if (m < 0 || sh < -31 || sh > 30) {
        PyErr_Format(PyExc_ValueError, "`multiplier` must be >= 0 and `shift` in [-31, 30]. Received: multiplier=%d, "
                     "shift=%d", m, sh);
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)PyArray_FROM_OTF(xo, NPY_INT32, NPY_ARRAY_IN_ARRAY);
    if (!x) return NULL;
    PyArrayObject *y = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x), NPY_INT32);
    if (y) {
        const int32_t *xp = (const int32_t *)PyArray_DATA(x);
        int32_t *yp = (int32_t *)PyArray_DATA(y);
        for (npy_intp k = 0; k < PyArray_SIZE(x); k++) yp[k] = tt_multiply_by_quantized_multiplier(xp[k], m, sh);
    }
    Py_DECREF(x);
    return (PyObject *)y;
}

static PyMethodDef core_methods[] = {
    {"has_bf16", py_has_bf16, METH_NOARGS,
     "has_bf16() -> bool. True when oneDNN runs bfloat16 convolutions on native instructions here "
     "(AVX512_BF16 or AMX)."},
    {"has_vnni", py_has_vnni, METH_NOARGS,
     "has_vnni() -> bool. True when oneDNN accumulates int8 convolutions exactly in int32 here "
     "(AVX512_VNNI, AVX_VNNI or AMX); dtype='int8' needs it."},
    {"cpu_isa", py_cpu_isa, METH_NOARGS,
     "cpu_isa() -> str. oneDNN's instruction set in use ('avx512_core_bf16', 'avx2', ...)."},
    {"onednn_version", py_onednn_version, METH_NOARGS,
     "onednn_version() -> (major, minor, patch, git_hash) of the oneDNN library in use."},
    {"set_num_threads", py_set_num_threads, METH_O,
     "set_num_threads(n) -> None. Sets the thread count of oneDNN/OpenMP compute (n >= 1)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS,
     "get_num_threads() -> int. Thread count oneDNN/OpenMP compute will use."},
    {"quantize_multiplier", py_quantize_multiplier, METH_O,
     "quantize_multiplier(real) -> (multiplier, shift). TFLite's QuantizeMultiplier (as dtype='int8_tflite' "
     "uses it): real ~ multiplier * 2**(shift - 31), multiplier in [2**30, 2**31); (0, 0) for 0 or tiny reals."},
    {"mean_multiplier", py_mean_multiplier, METH_VARARGS,
     "mean_multiplier(real, count) -> (multiplier, shift). quantize_multiplier(real) with 1 / count folded in, "
     "as TFLite's int8 MEAN (QuantizedMeanOrSum)."},
    {"multiply_by_quantized_multiplier", py_multiply_by_quantized_multiplier, METH_VARARGS,
     "multiply_by_quantized_multiplier(x, multiplier, shift) -> int32 ndarray. TFLite's "
     "MultiplyByQuantizedMultiplier (double rounding) on every element of int32 ndarray x."},
    {NULL, NULL, 0, NULL}};

static int core_exec(PyObject *module) {
    import_array1(-1);
    tt_module_state *st = tt_get_state(module);
    st->ModelFormatError = PyErr_NewExceptionWithDoc(
        "tflite_transfer._core.ModelFormatError",
        "Raised when a model file is corrupt, truncated or uses an unsupported feature. Subclass of ValueError.",
        PyExc_ValueError, NULL);
    if (!st->ModelFormatError || PyModule_AddObjectRef(module, "ModelFormatError", st->ModelFormatError) < 0) return -1;
    st->ImageDecodeError = PyErr_NewExceptionWithDoc(
        "tflite_transfer._core.ImageDecodeError",
        "Raised when image bytes cannot be decoded. Subclass of ValueError.", PyExc_ValueError, NULL);
    if (!st->ImageDecodeError || PyModule_AddObjectRef(module, "ImageDecodeError", st->ImageDecodeError) < 0) return -1;
    /* The status codes of core/tt_status.h, so Python need not repeat them. */
    static const tt_status codes[] = {TT_OK, TT_INVALID_ARGUMENT, TT_INVALID_MODEL, TT_UNSUPPORTED,
                                      TT_DECODE_ERROR, TT_OUT_OF_MEMORY, TT_IO_ERROR, TT_RUNTIME_ERROR};
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++)
        if (PyModule_AddIntConstant(module, tt_status_name(codes[k]), (long)codes[k]) < 0) return -1;
    if (tt_py_init_model(module) < 0) return -1;
    if (tt_py_init_image(module) < 0) return -1;
    if (tt_py_init_train(module) < 0) return -1;
    if (tt_py_init_engine(module) < 0) return -1;
    return 0;
}

static int core_traverse(PyObject *module, visitproc visit, void *arg) {
    tt_module_state *st = tt_get_state(module);
    Py_VISIT(st->ModelFormatError);
    Py_VISIT(st->ImageDecodeError);
    Py_VISIT(st->Model);
    Py_VISIT(st->ThreadPool);
    Py_VISIT(st->Loader);
    Py_VISIT(st->DensePlan);
    Py_VISIT(st->TrainEngine);
    return 0;
}

static int core_clear(PyObject *module) {
    tt_module_state *st = tt_get_state(module);
    Py_CLEAR(st->ModelFormatError);
    Py_CLEAR(st->ImageDecodeError);
    Py_CLEAR(st->Model);
    Py_CLEAR(st->ThreadPool);
    Py_CLEAR(st->Loader);
    Py_CLEAR(st->DensePlan);
    Py_CLEAR(st->TrainEngine);
    return 0;
}

static void core_free(void *module) { core_clear((PyObject *)module); }

static PyModuleDef_Slot core_slots[] = {{Py_mod_exec, core_exec}, {0, NULL}};

PyModuleDef tt_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tflite_transfer._core",
    .m_doc = "C core of tflite_transfer: TFLite reader, oneDNN engine, image pipeline, head trainer.",
    .m_size = sizeof(tt_module_state),
    .m_methods = core_methods,
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&tt_module_def); }
