/* py_engine.c - Python binding of the training engine: tflite_transfer._core.TrainEngine.
 *
 * A TrainEngine owns one tt_engine built by tt_engine_create_training and keeps
 * its Model alive; every call runs under the Model's lock with the GIL released
 * around C. Parameter buffers bound with bind_param are NumPy arrays the engine
 * references (kept alive here) and reads/writes in place.
 */
#include "python/py_model.h"

#include <string.h>

typedef struct TrainEngineObject {
    PyObject_HEAD
    ModelObject *model;  /* strong reference; its tt_model outlives the engine */
    tt_engine *engine;   /* owned */
    PyObject *bound;     /* list [n_params] of (value, grad) tuples or None */
    int32_t batch, height, width, channels;
} TrainEngineObject;

static PyObject *module_of(PyObject *self) { return PyType_GetModuleByDef(Py_TYPE(self), &tt_module_def); }

static PyObject *raise(TrainEngineObject *self, tt_status s) {
    PyObject *module = module_of((PyObject *)self);
    return module ? tt_py_raise_named(module, self->model->name, s) : NULL;
}

static PyObject *TrainEngine_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"model", "batch", "height", "width", "output_tensor", "train_from", NULL};
    PyObject *model;
    int batch, height, width, output, train_from;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oiiiii:TrainEngine", kwlist, &model, &batch, &height, &width,
                                     &output, &train_from))
        return NULL;
    PyObject *module = PyType_GetModuleByDef(type, &tt_module_def);
    if (!module) return NULL;
    if (!PyObject_TypeCheck(model, (PyTypeObject *)tt_get_state(module)->Model)) {
        PyErr_Format(PyExc_TypeError, "`model` must be a tflite_transfer._core.Model. Received: type %s",
                     Py_TYPE(model)->tp_name);
        return NULL;
    }
    ModelObject *mo = (ModelObject *)model;
    if (batch < 1 || height < 1 || width < 1 || output < 0 || output >= mo->model->n_tensors) {
        PyErr_Format(PyExc_ValueError, "TrainEngine needs batch, height, width >= 1 and an output tensor index in "
                     "[0, %d). Received: batch=%d, height=%d, width=%d, output_tensor=%d", mo->model->n_tensors,
                     batch, height, width, output);
        return NULL;
    }
    TrainEngineObject *self = (TrainEngineObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    Py_INCREF(model);
    self->model = mo;
    tt_status s;
    tt_engine *e = NULL;
    tt_py_lock_model(mo);
    Py_BEGIN_ALLOW_THREADS
    s = tt_engine_create_training(mo->model, batch, height, width, output, train_from, &e);
    Py_END_ALLOW_THREADS
    PyThread_release_lock(mo->lock);
    if (s != TT_OK) {
        raise(self, s);
        Py_DECREF(self);
        return NULL;
    }
    self->engine = e;
    self->batch = batch;
    self->height = height;
    self->width = width;
    self->channels = mo->model->tensors[mo->model->inputs[0]].shape[3];
    self->bound = PyList_New(tt_engine_n_params(e));
    if (!self->bound) {
        Py_DECREF(self);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(self->bound); k++) PyList_SET_ITEM(self->bound, k, Py_NewRef(Py_None));
    return (PyObject *)self;
}

static int TrainEngine_traverse(TrainEngineObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->model);
    Py_VISIT(self->bound);
    return 0;
}

static void TrainEngine_dealloc(TrainEngineObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tt_engine_destroy(self->engine);
    Py_XDECREF(self->bound);
    Py_XDECREF(self->model);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* A float32, C-contiguous, aligned array of exactly `n` elements (writeable if asked), else NULL + ValueError. */
static PyArrayObject *float_array(PyObject *obj, const char *name, npy_intp n, int writeable) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "`%s` must be a NumPy float32 array. Received: type %s", name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32 || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) ||
        PyArray_SIZE(a) != n || (writeable && !PyArray_ISWRITEABLE(a))) {
        PyErr_Format(PyExc_ValueError, "`%s` must be a C-contiguous%s float32 array of %lld elements. Received: "
                     "size %lld, dtype %s", name, writeable ? ", writeable" : "", (long long)n,
                     (long long)PyArray_SIZE(a), PyArray_DESCR(a)->typeobj->tp_name);
        return NULL;
    }
    return a;
}

static npy_intp shape_size(int32_t rank, const int64_t *shape) {
    npy_intp n = 1;
    for (int32_t k = 0; k < rank; k++) n *= (npy_intp)shape[k];
    return n;
}

static PyObject *new_float(int32_t rank, const int64_t *shape) {
    npy_intp dims[TT_MAX_RANK];
    for (int32_t k = 0; k < rank; k++) dims[k] = (npy_intp)shape[k];
    return PyArray_SimpleNew(rank, dims, NPY_FLOAT32);
}

static PyObject *TrainEngine_get_params(TrainEngineObject *self, void *closure) {
    int32_t n = tt_engine_n_params(self->engine);
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int32_t k = 0; k < n; k++) {
        int32_t op, tensor;
        int64_t size;
        tt_engine_param(self->engine, k, &op, &tensor, &size);
        PyObject *d = Py_BuildValue("{sisisL}", "op", op, "tensor", tensor, "size", (long long)size);
        if (!d) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, d);
    }
    return list;
}

static PyObject *TrainEngine_get_cut(TrainEngineObject *self, void *closure) {
    int32_t n = tt_engine_n_cut(self->engine);
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int32_t k = 0; k < n; k++) {
        int32_t tensor, rank;
        int64_t shape[TT_MAX_RANK];
        tt_engine_cut(self->engine, k, &tensor, &rank, shape);
        PyObject *t = tt_py_shape_tuple(rank, shape);
        PyObject *item = t ? Py_BuildValue("(iN)", tensor, t) : NULL;
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, item);
    }
    return list;
}

static PyObject *TrainEngine_get_output_shape(TrainEngineObject *self, void *closure) {
    int32_t rank;
    int64_t shape[TT_MAX_RANK];
    tt_engine_output_shape(self->engine, &rank, shape);
    return tt_py_shape_tuple(rank, shape);
}

static PyObject *TrainEngine_bind_param(TrainEngineObject *self, PyObject *args) {
    int k;
    PyObject *value, *grad;
    if (!PyArg_ParseTuple(args, "iOO:bind_param", &k, &value, &grad)) return NULL;
    int32_t op, tensor;
    int64_t size;
    if (k < 0 || k >= tt_engine_n_params(self->engine)) {
        PyErr_Format(PyExc_IndexError, "parameter index out of range [0, %d). Received: k=%d",
                     tt_engine_n_params(self->engine), k);
        return NULL;
    }
    tt_engine_param(self->engine, k, &op, &tensor, &size);
    PyArrayObject *v = float_array(value, "value", (npy_intp)size, 0);
    PyArrayObject *g = v ? float_array(grad, "grad", (npy_intp)size, 1) : NULL;
    if (!g) return NULL;
    PyObject *pair = PyTuple_Pack(2, value, grad);
    if (!pair) return NULL;
    tt_py_lock_model(self->model);
    tt_status s = tt_engine_bind_param(self->engine, k, (const float *)PyArray_DATA(v), (float *)PyArray_DATA(g));
    PyThread_release_lock(self->model->lock);
    if (s != TT_OK) {
        Py_DECREF(pair);
        return raise(self, s);
    }
    PyList_SetItem(self->bound, k, pair); /* steals pair */
    Py_RETURN_NONE;
}

/* Checks x: (batch, height, width, channels) float32. */
static PyArrayObject *input_array(TrainEngineObject *self, PyObject *x) {
    if (!PyArray_Check(x) || PyArray_NDIM((PyArrayObject *)x) != 4 ||
        PyArray_DIM((PyArrayObject *)x, 0) != self->batch || PyArray_DIM((PyArrayObject *)x, 1) != self->height ||
        PyArray_DIM((PyArrayObject *)x, 2) != self->width || PyArray_DIM((PyArrayObject *)x, 3) != self->channels) {
        PyErr_Format(PyExc_ValueError, "`x` must be a float32 array of shape (%d, %d, %d, %d), the engine's.",
                     self->batch, self->height, self->width, self->channels);
        return NULL;
    }
    return float_array(x, "x", (npy_intp)self->batch * self->height * self->width * self->channels, 0);
}

static PyObject *TrainEngine_run(TrainEngineObject *self, PyObject *x) {
    PyArrayObject *xa = input_array(self, x);
    if (!xa) return NULL;
    int32_t rank;
    int64_t shape[TT_MAX_RANK];
    tt_engine_output_shape(self->engine, &rank, shape);
    PyObject *y = new_float(rank, shape);
    if (!y) return NULL;
    tt_status s;
    tt_py_lock_model(self->model);
    Py_BEGIN_ALLOW_THREADS
    s = tt_engine_run(self->engine, (const float *)PyArray_DATA(xa), (float *)PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    PyThread_release_lock(self->model->lock);
    if (s != TT_OK) {
        Py_DECREF(y);
        return raise(self, s);
    }
    return y;
}

static PyObject *TrainEngine_backward(TrainEngineObject *self, PyObject *dy) {
    int32_t rank;
    int64_t shape[TT_MAX_RANK];
    tt_engine_output_shape(self->engine, &rank, shape);
    PyArrayObject *d = float_array(dy, "dy", shape_size(rank, shape), 0);
    if (!d) return NULL;
    tt_status s;
    tt_py_lock_model(self->model);
    Py_BEGIN_ALLOW_THREADS
    s = tt_engine_backward(self->engine, (const float *)PyArray_DATA(d));
    Py_END_ALLOW_THREADS
    PyThread_release_lock(self->model->lock);
    if (s != TT_OK) return raise(self, s);
    Py_RETURN_NONE;
}

static PyObject *TrainEngine_run_bottom(TrainEngineObject *self, PyObject *x) {
    PyArrayObject *xa = input_array(self, x);
    if (!xa) return NULL;
    int32_t n = tt_engine_n_cut(self->engine);
    PyObject *list = PyList_New(n);
    float *ptrs[64];
    if (!list) return NULL;
    if (n > 64) {
        Py_DECREF(list);
        return PyErr_Format(PyExc_ValueError, "the cut has %d tensors; at most 64 are supported", n);
    }
    for (int32_t k = 0; k < n; k++) {
        int32_t tensor, rank;
        int64_t shape[TT_MAX_RANK];
        tt_engine_cut(self->engine, k, &tensor, &rank, shape);
        PyObject *a = new_float(rank, shape);
        if (!a) {
            Py_DECREF(list);
            return NULL;
        }
        ptrs[k] = (float *)PyArray_DATA((PyArrayObject *)a);
        PyList_SET_ITEM(list, k, a);
    }
    tt_status s;
    tt_py_lock_model(self->model);
    Py_BEGIN_ALLOW_THREADS
    s = tt_engine_run_bottom(self->engine, (const float *)PyArray_DATA(xa), ptrs);
    Py_END_ALLOW_THREADS
    PyThread_release_lock(self->model->lock);
    if (s != TT_OK) {
        Py_DECREF(list);
        return raise(self, s);
    }
    return list;
}

static PyObject *TrainEngine_run_top(TrainEngineObject *self, PyObject *cut) {
    int32_t n = tt_engine_n_cut(self->engine);
    if (!PyList_Check(cut) || PyList_GET_SIZE(cut) != n || n > 64)
        return PyErr_Format(PyExc_ValueError, "`cut` must be a list of %d float32 arrays (as run_bottom returns)", n);
    const float *ptrs[64];
    for (int32_t k = 0; k < n; k++) {
        int32_t tensor, rank;
        int64_t shape[TT_MAX_RANK];
        tt_engine_cut(self->engine, k, &tensor, &rank, shape);
        PyArrayObject *a = float_array(PyList_GET_ITEM(cut, k), "cut[k]", shape_size(rank, shape), 0);
        if (!a) return NULL;
        ptrs[k] = (const float *)PyArray_DATA(a);
    }
    int32_t rank;
    int64_t shape[TT_MAX_RANK];
    tt_engine_output_shape(self->engine, &rank, shape);
    PyObject *y = new_float(rank, shape);
    if (!y) return NULL;
    tt_status s;
    tt_py_lock_model(self->model);
    Py_BEGIN_ALLOW_THREADS
    s = tt_engine_run_top(self->engine, ptrs, (float *)PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    PyThread_release_lock(self->model->lock);
    if (s != TT_OK) {
        Py_DECREF(y);
        return raise(self, s);
    }
    return y;
}

static PyMethodDef TrainEngine_methods[] = {
    {"bind_param", (PyCFunction)TrainEngine_bind_param, METH_VARARGS,
     "bind_param(k, value, grad) -> None. Binds parameter k (see `params`) to float32 C-contiguous arrays of its "
     "size in the tensor's TFLite layout: value is read at the start of every run (so in-place optimizer updates "
     "are seen), grad is overwritten by backward. The engine keeps references to both."},
    {"run", (PyCFunction)TrainEngine_run, METH_O,
     "run(x) -> y. Whole forward (frozen bottom in inference mode, trainable top keeping what backward needs). "
     "x: float32 (batch, height, width, channels), preprocessed."},
    {"backward", (PyCFunction)TrainEngine_backward, METH_O,
     "backward(dy) -> None. dy = dL/dy (output shape, float32) after run or run_top; writes the bound gradients."},
    {"run_bottom", (PyCFunction)TrainEngine_run_bottom, METH_O,
     "run_bottom(x) -> list of float32 arrays: the cut tensors (see `cut`), to be cached."},
    {"run_top", (PyCFunction)TrainEngine_run_top, METH_O,
     "run_top(cut) -> y. Forward of the trainable top only, from cached cut values (run_bottom's list)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef TrainEngine_getset[] = {
    {"params", (getter)TrainEngine_get_params, NULL,
     "list of dicts (op, tensor, size): the trainable weights and biases, in the order bind_param indexes them.",
     NULL},
    {"cut", (getter)TrainEngine_get_cut, NULL,
     "list of (tensor, shape): tensors computed below the boundary and read above it.", NULL},
    {"output_shape", (getter)TrainEngine_get_output_shape, NULL, "shape of run()'s result.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot TrainEngine_slots[] = {
    {Py_tp_doc,
     "TrainEngine(model, batch, height, width, output_tensor, train_from)\n\n"
     "oneDNN forward + backward of `model` (a _core.Model) computing tensor `output_tensor` for batches of "
     "`batch` images of height x width, with the ops from index `train_from` on trainable (forward_training, "
     "activations kept, backward primitives) and the ops below it frozen (inference, nothing kept). Raises "
     "ValueError naming the first trainable op without a backward pass, or for train_from out of [0, n_ops]."},
    {Py_tp_new, TrainEngine_new},
    {Py_tp_dealloc, TrainEngine_dealloc},
    {Py_tp_traverse, TrainEngine_traverse},
    {Py_tp_methods, TrainEngine_methods},
    {Py_tp_getset, TrainEngine_getset},
    {0, NULL}};

static PyType_Spec TrainEngine_spec = {
    .name = "tflite_transfer._core.TrainEngine",
    .basicsize = sizeof(TrainEngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = TrainEngine_slots,
};

int tt_py_init_engine(PyObject *module) {
    tt_module_state *st = tt_get_state(module);
    st->TrainEngine = PyType_FromModuleAndSpec(module, &TrainEngine_spec, NULL);
    if (!st->TrainEngine) return -1;
    return PyModule_AddObjectRef(module, "TrainEngine", st->TrainEngine);
}
