/* py_model.c - Python binding of the model area: tflite_transfer._core.Model
 * (a loaded .tflite model and its cached oneDNN engines) and builtin_name().
 *
 * Ownership: a Model owns its tt_model and up to MODEL_CACHE engines built
 * from it; dealloc destroys the engines first, then the model. A per-Model
 * lock serializes run() / engine creation, so one Model can be shared by
 * threads; the GIL is released while C loads, builds or runs.
 */
#include "python/py_common.h"

#include <pythread.h>
#include <string.h>

#include "core/tt_threads.h"
#include "ops/tt_ops.h"
#include "python/py_model.h"

static const char *dtype_name(tt_tflite_type t) {
    switch (t) {
    case TT_TFLITE_FLOAT32: return "float32";
    case TT_TFLITE_FLOAT16: return "float16";
    case TT_TFLITE_INT32: return "int32";
    case TT_TFLITE_UINT8: return "uint8";
    case TT_TFLITE_INT64: return "int64";
    case TT_TFLITE_INT8: return "int8";
    }
    return "unknown";
}

/* Raises the exception for a failed status, with the model name in front of
 * model-format messages (ModelFormatError for corrupt and unsupported files). */
static PyObject *raise_model_error(PyObject *module, PyObject *name, tt_status status) {
    tt_module_state *st = tt_get_state(module);
    if (status == TT_INVALID_MODEL || status == TT_UNSUPPORTED) {
        PyErr_Format(st->ModelFormatError, "%U: %s", name, tt_last_error());
        tt_clear_error();
        return NULL;
    }
    return tt_py_raise(module, status);
}

/* Like raise_model_error, but every status gets the model name in front: shape
 * errors found while building an engine come either from the caller's input size
 * or from a corrupt file, and the name tells the user which model it was. */
PyObject *tt_py_raise_named(PyObject *module, PyObject *name, tt_status status) {
    if (status == TT_INVALID_MODEL || status == TT_UNSUPPORTED) return raise_model_error(module, name, status);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", tt_last_error());
    tt_py_raise(module, status);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_Format(type, "%U: %s", name, msg);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return NULL;
}

static PyObject *module_of(PyObject *self) { return PyType_GetModuleByDef(Py_TYPE(self), &tt_module_def); }

void tt_py_lock_model(ModelObject *self) {
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

/* ---- construction ---------------------------------------------------------- */

static PyObject *Model_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "name", NULL};
    PyObject *data;
    PyObject *name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Model", kwlist, &data, &name)) return NULL;
    PyObject *module = PyType_GetModuleByDef(type, &tt_module_def);
    if (!module) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "`data` must be a bytes-like object holding a .tflite file. Received: type %s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    ModelObject *self = (ModelObject *)type->tp_alloc(type, 0);
    if (!self) {
        PyBuffer_Release(&view);
        return NULL;
    }
    /* str(name), so a pathlib.Path works too */
    self->name = (name && name != Py_None) ? PyObject_Str(name) : PyUnicode_FromString("<bytes>");
    self->lock = PyThread_allocate_lock();
    if (!self->name || !self->lock) {
        PyBuffer_Release(&view);
        if (self->name) PyErr_NoMemory();
        Py_DECREF(self);
        return NULL;
    }
    tt_status s;
    tt_model *model = NULL;
    Py_BEGIN_ALLOW_THREADS
    s = tt_model_load((const uint8_t *)view.buf, (size_t)view.len, tt_ops_resolver(), &model);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (s != TT_OK) {
        raise_model_error(module, self->name, s);
        Py_DECREF(self);
        return NULL;
    }
    self->model = model;
    return (PyObject *)self;
}

static int Model_traverse(ModelObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void Model_dealloc(ModelObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    for (int i = 0; i < MODEL_CACHE; i++) tt_engine_destroy(self->cache[i].engine);
    tt_model_destroy(self->model);
    if (self->lock) PyThread_free_lock(self->lock);
    Py_XDECREF(self->name);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- inspection ------------------------------------------------------------ */

static PyObject *int_tuple(const int32_t *v, int32_t n) {
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int32_t i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLong(v[i]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

static PyObject *quant_dict(const tt_quant *q) {
    if (q->n == 0) Py_RETURN_NONE;
    PyObject *scale = PyList_New(q->n), *zp = PyList_New(q->n);
    if (!scale || !zp) goto error;
    for (int32_t i = 0; i < q->n; i++) {
        PyObject *a = PyFloat_FromDouble(q->scale[i]), *b = PyLong_FromLongLong(q->zero_point[i]);
        if (!a || !b) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            goto error;
        }
        PyList_SET_ITEM(scale, i, a);
        PyList_SET_ITEM(zp, i, b);
    }
    PyObject *d = Py_BuildValue("{sOsOsi}", "scale", scale, "zero_point", zp, "quantized_dimension",
                                q->quantized_dimension);
    Py_DECREF(scale);
    Py_DECREF(zp);
    return d;
error:
    Py_XDECREF(scale);
    Py_XDECREF(zp);
    return NULL;
}

static PyObject *Model_get_tensors(ModelObject *self, void *closure) {
    const tt_model *m = self->model;
    PyObject *list = PyList_New(m->n_tensors);
    if (!list) return NULL;
    for (int32_t i = 0; i < m->n_tensors; i++) {
        const tt_tensor *t = &m->tensors[i];
        PyObject *shape = int_tuple(t->shape, t->rank);
        PyObject *q = shape ? quant_dict(&t->quant) : NULL;
        PyObject *d = q ? Py_BuildValue("{sisssOsssOsO}", "index", i, "name", t->name, "shape", shape, "dtype",
                                        dtype_name(t->type), "is_constant",
                                        (t->data || t->idata) ? Py_True : Py_False, "quantization", q)
                        : NULL;
        Py_XDECREF(shape);
        Py_XDECREF(q);
        if (!d) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, d);
    }
    return list;
}

static const char *act_name(tt_activation a) {
    return a == TT_ACT_RELU ? "RELU" : a == TT_ACT_RELU6 ? "RELU6" : "NONE";
}

static int set_int(PyObject *d, const char *k, long v) {
    PyObject *x = PyLong_FromLong(v);
    int r = x ? PyDict_SetItemString(d, k, x) : -1;
    Py_XDECREF(x);
    return r;
}

static int set_str(PyObject *d, const char *k, const char *v) {
    PyObject *x = PyUnicode_FromString(v);
    int r = x ? PyDict_SetItemString(d, k, x) : -1;
    Py_XDECREF(x);
    return r;
}

static PyObject *op_options(const tt_op *op) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    int r = 0;
    /* The op table says which option fields the op has. */
    uint32_t f = op->kind->fields;
    if (f & TT_FIELD_PADDING) {
        r |= set_str(d, "padding", op->padding == TT_PADDING_SAME ? "SAME" : "VALID");
        r |= set_int(d, "stride_h", op->stride_h) | set_int(d, "stride_w", op->stride_w);
    }
    if (f & TT_FIELD_DILATION) r |= set_int(d, "dilation_h", op->dilation_h) | set_int(d, "dilation_w", op->dilation_w);
    if (f & TT_FIELD_DEPTH_MULT) r |= set_int(d, "depth_multiplier", op->depth_multiplier);
    if (f & TT_FIELD_FILTER) r |= set_int(d, "filter_h", op->filter_h) | set_int(d, "filter_w", op->filter_w);
    if (f & TT_FIELD_AXIS) r |= set_int(d, "axis", op->axis);
    if (f & TT_FIELD_ACTIVATION) r |= set_str(d, "activation", act_name(op->activation));
    if (f & TT_FIELD_KEEP_DIMS) r |= PyDict_SetItemString(d, "keep_dims", op->keep_dims ? Py_True : Py_False);
    if (f & TT_FIELD_BETA) {
        PyObject *b = PyFloat_FromDouble(op->beta);
        r |= b ? PyDict_SetItemString(d, "beta", b) : -1;
        Py_XDECREF(b);
    }
    if (r) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyObject *Model_get_ops(ModelObject *self, void *closure) {
    const tt_model *m = self->model;
    PyObject *list = PyList_New(m->n_ops);
    if (!list) return NULL;
    for (int32_t i = 0; i < m->n_ops; i++) {
        const tt_op *op = &m->ops[i];
        PyObject *ins = int_tuple(op->inputs, op->n_inputs);
        PyObject *outs = int_tuple(&op->output, 1);
        PyObject *opts = op_options(op);
        PyObject *d = (ins && outs && opts)
                          ? Py_BuildValue("{sisssisOsOsO}", "index", i, "type", tt_builtin_name(op->builtin_code),
                                          "builtin_code", op->builtin_code, "inputs", ins, "outputs", outs,
                                          "options", opts)
                          : NULL;
        Py_XDECREF(ins);
        Py_XDECREF(outs);
        Py_XDECREF(opts);
        if (!d) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, d);
    }
    return list;
}

static PyObject *Model_get_inputs(ModelObject *self, void *closure) {
    return int_tuple(self->model->inputs, self->model->n_inputs);
}

static PyObject *Model_get_outputs(ModelObject *self, void *closure) {
    return int_tuple(self->model->outputs, self->model->n_outputs);
}

static PyObject *Model_get_name(ModelObject *self, void *closure) { return Py_NewRef(self->name); }

static PyObject *Model_get_tensor(ModelObject *self, PyObject *arg) {
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    const tt_model *m = self->model;
    if (i < 0 || i >= m->n_tensors) {
        PyErr_Format(PyExc_ValueError, "tensor index %ld is out of range; the model has %d tensors (0..%d)", i,
                     m->n_tensors, m->n_tensors - 1);
        return NULL;
    }
    const tt_tensor *t = &m->tensors[i];
    if (!t->data && !t->idata) {
        PyErr_Format(PyExc_ValueError, "tensor %ld ('%s') is an activation, not a constant: it has no stored data", i,
                     t->name);
        return NULL;
    }
    npy_intp dims[TT_MAX_RANK];
    for (int32_t k = 0; k < t->rank; k++) dims[k] = t->shape[k];
    PyObject *arr = PyArray_SimpleNew(t->rank, dims, t->data ? NPY_FLOAT32 : NPY_INT32);
    if (!arr) return NULL;
    memcpy(PyArray_DATA((PyArrayObject *)arr), t->data ? (const void *)t->data : (const void *)t->idata,
           (size_t)t->size * 4);
    return arr;
}

static PyObject *Model_set_tensor(ModelObject *self, PyObject *args) {
    long i;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "lO:set_tensor", &i, &obj)) return NULL;
    const tt_model *m = self->model;
    if (i < 0 || i >= m->n_tensors || !m->tensors[i].data) {
        PyErr_Format(PyExc_ValueError, "`index` must be a float constant tensor of the model. Received: index=%ld", i);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, NPY_FLOAT32, 0, 0, NPY_ARRAY_IN_ARRAY);
    if (!a) return NULL;
    if (PyArray_SIZE(a) != m->tensors[i].size) {
        PyErr_Format(PyExc_ValueError, "`value` must have %lld elements (tensor %ld '%s'). Received: %lld",
                     (long long)m->tensors[i].size, i, m->tensors[i].name, (long long)PyArray_SIZE(a));
        Py_DECREF(a);
        return NULL;
    }
    tt_py_lock_model(self);
    tt_status s = tt_model_set_constant(self->model, (int32_t)i, (const float *)PyArray_DATA(a), PyArray_SIZE(a));
    for (int k = 0; k < MODEL_CACHE; k++) { /* engines copied the old weights: rebuild on next use */
        tt_engine_destroy(self->cache[k].engine);
        self->cache[k].engine = NULL;
    }
    PyThread_release_lock(self->lock);
    Py_DECREF(a);
    if (s != TT_OK) return tt_py_raise(module_of((PyObject *)self), s);
    Py_RETURN_NONE;
}

/* ---- running --------------------------------------------------------------- */

/* Parses output_tensor (None -> the model's first output) into *out. */
static int parse_output_tensor(ModelObject *self, PyObject *obj, int32_t *out) {
    const tt_model *m = self->model;
    if (obj == NULL || obj == Py_None) {
        if (m->n_outputs < 1) {
            PyErr_SetString(PyExc_ValueError, "the model declares no output; pass `output_tensor`");
            return -1;
        }
        *out = m->outputs[0];
        return 0;
    }
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v >= m->n_tensors) {
        PyErr_Format(PyExc_ValueError, "`output_tensor` must be a tensor index in [0, %d). Received: output_tensor=%ld",
                     m->n_tensors, v);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

/* Returns the cached engine for the key, building it (GIL released) if needed.
 * Call with the model lock held. */
static tt_engine *get_engine(ModelObject *self, int32_t n, int32_t h, int32_t w, int32_t out,
                             tt_precision precision) {
    engine_entry *victim = &self->cache[0];
    int32_t threads = tt_get_num_threads();
    self->tick++;
    for (int i = 0; i < MODEL_CACHE; i++) {
        engine_entry *e = &self->cache[i];
        if (e->engine && e->batch == n && e->height == h && e->width == w && e->output == out &&
            e->precision == precision && e->num_threads == threads) {
            e->last_used = self->tick;
            return e->engine;
        }
        if (!e->engine || (victim->engine && e->last_used < victim->last_used)) victim = e;
    }
    tt_engine *engine = NULL;
    tt_status s;
    Py_BEGIN_ALLOW_THREADS
    s = tt_engine_create_precision(self->model, n, h, w, out, precision, &engine);
    Py_END_ALLOW_THREADS
    if (s != TT_OK) {
        PyObject *module = module_of((PyObject *)self);
        if (module) tt_py_raise_named(module, self->name, s);
        return NULL;
    }
    tt_engine_destroy(victim->engine);
    victim->engine = engine;
    victim->batch = n;
    victim->height = h;
    victim->width = w;
    victim->output = out;
    victim->precision = precision;
    victim->num_threads = tt_engine_num_threads(engine);
    victim->last_used = self->tick;
    return engine;
}

static PyObject *Model_run(ModelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"x", "output_tensor", "precision", NULL};
    PyObject *x, *out_obj = Py_None;
    const char *prec = "float32";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|Os:run", kwlist, &x, &out_obj, &prec)) return NULL;
    tt_precision precision;
    if (strcmp(prec, "float32") == 0) precision = TT_PRECISION_F32;
    else if (strcmp(prec, "bfloat16") == 0) precision = TT_PRECISION_BF16;
    else if (strcmp(prec, "int8") == 0) precision = TT_PRECISION_INT8;
    else if (strcmp(prec, "int8_tflite") == 0) precision = TT_PRECISION_INT8_TFLITE;
    else {
        PyErr_Format(PyExc_ValueError, "`precision` must be 'float32', 'bfloat16', 'int8' or 'int8_tflite'. Received: precision='%s'",
                     prec);
        return NULL;
    }
    const tt_model *m = self->model;
    if (m->n_inputs < 1) {
        PyErr_SetString(PyExc_ValueError, "the model declares no input tensor");
        return NULL;
    }
    const tt_tensor *in = &m->tensors[m->inputs[0]];
    if (in->rank != 4) {
        PyErr_Format(PyExc_ValueError, "the model's input tensor %d has rank %d; only NHWC (rank 4) inputs are "
                     "supported", m->inputs[0], in->rank);
        return NULL;
    }
    int32_t channels = in->shape[3];
    if (!PyArray_Check(x)) {
        PyErr_Format(PyExc_ValueError, "`x` must be a float32 NumPy array of shape (N, H, W, %d). Received: type %s",
                     channels, Py_TYPE(x)->tp_name);
        return NULL;
    }
    PyArrayObject *xa = (PyArrayObject *)x;
    int nd = PyArray_NDIM(xa);
    npy_intp *xd = PyArray_DIMS(xa);
    PyObject *shape_str = NULL;
    {
        PyObject *shape = PyTuple_New(nd);
        if (!shape) return NULL;
        for (int k = 0; k < nd; k++) {
            PyObject *dim = PyLong_FromSsize_t(xd[k]);
            if (!dim) {
                Py_DECREF(shape);
                return NULL;
            }
            PyTuple_SET_ITEM(shape, k, dim);
        }
        shape_str = PyObject_Repr(shape);
        Py_DECREF(shape);
        if (!shape_str) return NULL;
    }
    PyObject *dtype_str = PyObject_Str((PyObject *)PyArray_DESCR(xa));
    if (!dtype_str) {
        Py_DECREF(shape_str);
        return NULL;
    }
    const char *problem = NULL;
    if (PyArray_TYPE(xa) != NPY_FLOAT32) problem = "must have dtype float32";
    else if (nd != 4) problem = "must be a 4D array";
    else if (xd[3] != channels) problem = "must have the model's channel count in its last dimension";
    else if (xd[0] < 1 || xd[1] < 1 || xd[2] < 1) problem = "must have N, H, W >= 1";
    else if (xd[0] > INT32_MAX || xd[1] > INT32_MAX || xd[2] > INT32_MAX) problem = "is too large";
    else if (!PyArray_IS_C_CONTIGUOUS(xa) || !PyArray_ISALIGNED(xa)) problem = "must be C-contiguous and aligned";
    if (problem) {
        PyErr_Format(PyExc_ValueError, "`x` %s (N, H, W, %d) float32 array. Received: x.shape=%U, x.dtype=%U",
                     problem, channels, shape_str, dtype_str);
        Py_DECREF(shape_str);
        Py_DECREF(dtype_str);
        return NULL;
    }
    Py_DECREF(shape_str);
    Py_DECREF(dtype_str);
    int32_t out_t;
    if (parse_output_tensor(self, out_obj, &out_t) < 0) return NULL;

    tt_py_lock_model(self);
    PyObject *result = NULL;
    tt_engine *engine = get_engine(self, (int32_t)xd[0], (int32_t)xd[1], (int32_t)xd[2], out_t, precision);
    if (engine) {
        int32_t rank;
        int64_t shape[TT_MAX_RANK];
        npy_intp dims[TT_MAX_RANK];
        tt_engine_output_shape(engine, &rank, shape);
        for (int32_t k = 0; k < rank; k++) dims[k] = (npy_intp)shape[k];
        result = PyArray_SimpleNew(rank, dims, NPY_FLOAT32);
        if (result) {
            tt_status s;
            float *dst = (float *)PyArray_DATA((PyArrayObject *)result);
            const float *src = (const float *)PyArray_DATA(xa);
            Py_BEGIN_ALLOW_THREADS
            s = tt_engine_run(engine, src, dst);
            Py_END_ALLOW_THREADS
            self->last_run_threads = tt_engine_last_run_threads(engine);
            if (s != TT_OK) {
                Py_CLEAR(result);
                PyObject *module = module_of((PyObject *)self);
                if (module) tt_py_raise(module, s);
            }
        }
    }
    PyThread_release_lock(self->lock);
    return result;
}

static int parse_dim(PyObject *obj, const char *name, int32_t dflt, int32_t *out) {
    if (obj == NULL || obj == Py_None) {
        *out = dflt;
        return 0;
    }
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 1 || v > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "`%s` must be a positive integer. Received: %s=%ld", name, name, v);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static PyObject *Model_output_shape(ModelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"output_tensor", "batch", "height", "width", NULL};
    PyObject *out_obj = Py_None, *b = NULL, *h = NULL, *w = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOOO:output_shape", kwlist, &out_obj, &b, &h, &w)) return NULL;
    int32_t out_t, batch, height, width;
    if (parse_output_tensor(self, out_obj, &out_t) < 0 || parse_dim(b, "batch", 1, &batch) < 0 ||
        parse_dim(h, "height", 0, &height) < 0 || parse_dim(w, "width", 0, &width) < 0)
        return NULL;
    int32_t rank;
    int64_t shape[TT_MAX_RANK];
    tt_status s = tt_model_output_shape(self->model, batch, height, width, out_t, &rank, shape);
    if (s != TT_OK) {
        PyObject *module = module_of((PyObject *)self);
        return module ? tt_py_raise_named(module, self->name, s) : NULL;
    }
    return tt_py_shape_tuple(rank, shape);
}

/* ---- type and module registration ------------------------------------------ */

static PyMethodDef Model_methods[] = {
    {"get_tensor", (PyCFunction)Model_get_tensor, METH_O,
     "get_tensor(index) -> ndarray. A copy of constant tensor `index`, with its stored shape: float32 "
     "(dequantized: scale * (q - zero_point), per channel where the file says so; float16 converted) or int32 "
     "(integer constants without quantization). Raises ValueError for an activation or an index out of range."},
    {"set_tensor", (PyCFunction)Model_set_tensor, METH_VARARGS,
     "set_tensor(index, value) -> None. Overwrites float constant tensor `index` (weights or bias, its stored "
     "size; any shape with that many elements, cast to float32), e.g. with fine-tuned weights. Cached engines are "
     "dropped and rebuilt with the new values on their next use."},
    {"run", (PyCFunction)(void (*)(void))Model_run, METH_VARARGS | METH_KEYWORDS,
     "run(x, output_tensor=None, precision='float32') -> float32 ndarray.\n\n"
     "Forward pass on oneDNN. x: float32, C-contiguous, shape (N, H, W, C) with C the model input's channels and "
     "N, H, W >= 1, already preprocessed (MobileNetV2: x / 127.5 - 1). output_tensor: index of the tensor to "
     "compute (default: the model's first output); any tensor computed from the first input, e.g. the pooled "
     "features. Returns that tensor for the batch: its shape with batch N and the spatial sizes propagated from "
     "H, W. precision: 'float32' or 'bfloat16' (convolutions on bf16 activations and weights with float32 "
     "accumulation; input and output stay float32; needs a CPU with bf16 instructions, else ValueError) or "
     "'int8' (the file's own quantization on oneDNN int8 primitives, up to the pooled features; int8 outputs "
     "are dequantized; ValueError for models or ops outside that scheme). "
     "Engines are cached per (N, H, W, output_tensor, precision, thread setting): a new "
     "tflite_transfer.set_num_threads value rebuilds them, whichever thread runs. Raises ValueError for bad "
     "arguments."},
    {"output_shape", (PyCFunction)(void (*)(void))Model_output_shape, METH_VARARGS | METH_KEYWORDS,
     "output_shape(output_tensor=None, batch=1, height=None, width=None) -> tuple. Shape that run() returns for "
     "that tensor and input size (height/width None: the model's own)."},
    {NULL, NULL, 0, NULL}};

static PyObject *Model_get_last_run_threads(ModelObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->last_run_threads);
}

static PyGetSetDef Model_getset[] = {
    {"tensors", (getter)Model_get_tensors, NULL,
     "list of dicts: index, name, shape (tuple), dtype ('float32', 'float16', 'int8', 'uint8', 'int32', 'int64'; "
     "the type in the file), is_constant, quantization (None or dict(scale, zero_point, quantized_dimension)).",
     NULL},
    {"ops", (getter)Model_get_ops, NULL,
     "list of dicts in execution order: index, type ('CONV_2D', ...), builtin_code, inputs (tuple, -1 = absent), "
     "outputs (tuple), options (dict with the op's own options: padding, stride_h, stride_w, dilation_h, "
     "dilation_w, filter_h, filter_w, depth_multiplier, activation, axis, keep_dims, beta).",
     NULL},
    {"inputs", (getter)Model_get_inputs, NULL, "tuple of the subgraph's input tensor indices.", NULL},
    {"outputs", (getter)Model_get_outputs, NULL, "tuple of the subgraph's output tensor indices.", NULL},
    {"name", (getter)Model_get_name, NULL, "name used in error messages (the file name).", NULL},
    {"last_run_num_threads", (getter)Model_get_last_run_threads, NULL,
     "int: the OpenMP thread count in effect while the last run() executed (what oneDNN's parallel regions "
     "use); 0 before any run.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot Model_slots[] = {
    {Py_tp_doc,
     "Model(data, name='<bytes>')\n\n"
     "A TensorFlow Lite model (.tflite flatbuffer bytes, any bytes-like object) loaded into float32: quantized "
     "and float16 weights are dequantized on load. Supported ops: CONV_2D, DEPTHWISE_CONV_2D (depth_multiplier "
     "1), ADD, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN (over H, W), PAD, RESHAPE, FULLY_CONNECTED, SOFTMAX, "
     "CONCATENATION, QUANTIZE, DEQUANTIZE; fused NONE/RELU/RELU6. Raises ModelFormatError (a ValueError) naming "
     "`name` and what is wrong for a corrupt, truncated or unsupported file."},
    {Py_tp_new, Model_new},
    {Py_tp_dealloc, Model_dealloc},
    {Py_tp_traverse, Model_traverse},
    {Py_tp_methods, Model_methods},
    {Py_tp_getset, Model_getset},
    {0, NULL}};

static PyType_Spec Model_spec = {
    .name = "tflite_transfer._core.Model",
    .basicsize = sizeof(ModelObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Model_slots,
};

static PyObject *py_builtin_name(PyObject *module, PyObject *arg) {
    long code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred()) return NULL;
    return PyUnicode_FromString(tt_builtin_name(code < INT32_MIN || code > INT32_MAX ? -1 : (int32_t)code));
}

static PyMethodDef model_functions[] = {
    {"builtin_name", py_builtin_name, METH_O,
     "builtin_name(code) -> str. TFLite BuiltinOperator name of an int code ('CONV_2D' for 3), 'UNKNOWN' if none."},
    {NULL, NULL, 0, NULL}};

int tt_py_init_model(PyObject *module) {
    tt_module_state *st = tt_get_state(module);
    PyObject *type = PyType_FromModuleAndSpec(module, &Model_spec, NULL);
    if (!type) return -1;
    st->Model = type;
    if (PyModule_AddObjectRef(module, "Model", type) < 0) return -1;
    return PyModule_AddFunctions(module, model_functions);
}
