/* py_train.c - Python bindings of the head trainer (tt_train.h).
 *
 * Registers on tflite_transfer._core:
 *   DensePlan(batch, in_features, out_features)   heap type (DensePlan)
 *     .forward(x, kernel, bias, y) -> None
 *     .backward(dy, x, kernel, dx_or_None, dkernel, dbias) -> None
 *   relu_forward(x, y), relu_backward(dy, y, dx), softmax_forward(x, y), sigmoid_forward(x, y)
 *   softmax_xent_forward(logits, targets, sample_weight|None, label_smoothing, probs) -> float loss_sum
 *   softmax_xent_backward(probs, targets, sample_weight|None, label_smoothing, scale, dlogits)
 *   sigmoid_bce_forward / sigmoid_bce_backward (same signatures)
 *   dropout_forward(x, rate, seed, y, mask_uint8), dropout_backward(dy, mask, rate, dx)
 *   l2_forward(w, l2) -> float, l2_backward(w, l2, dw)
 *   sgd_update(var, grad, m|None, lr, momentum, nesterov)
 *   adam_update(var, grad, m, v, vhat|None, lr, beta_1, beta_2, epsilon, t)
 *   weight_decay_update(var, lr, weight_decay)
 *   rmsprop_update(var, grad, vel, mom|None, avg|None, lr, rho, momentum, epsilon)
 * Every array must be a C-contiguous NumPy array of the stated dtype (float32
 * unless noted); outputs must be writable and are written in place. The Python
 * layer validates user input first; these checks only keep bad calls from
 * crashing. The GIL is released around the C compute.
 */
#include "python/py_common.h"

#include "train/tt_train.h"

/* Data pointer of `o` if it is a C-contiguous ndarray of `type` with `size`
 * elements (size < 0: any), writable when asked; NULL + ValueError else. */
static void *arr_ptr(PyObject *o, const char *name, int type, npy_intp size, int writable) {
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_ValueError, "`%s` must be a NumPy array. Received: %R", name, (PyObject *)Py_TYPE(o));
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != type || !PyArray_IS_C_CONTIGUOUS(a) || (writable && !PyArray_ISWRITEABLE(a))) {
        PyErr_Format(PyExc_ValueError, "`%s` must be a C-contiguous%s %s array.", name,
                     writable ? " writable" : "", type == NPY_FLOAT32 ? "float32" : "uint8");
        return NULL;
    }
    if (size >= 0 && PyArray_SIZE(a) != size) {
        PyErr_Format(PyExc_ValueError, "`%s` must have %zd elements. Received: %zd", name, (Py_ssize_t)size,
                     (Py_ssize_t)PyArray_SIZE(a));
        return NULL;
    }
    return PyArray_DATA(a);
}

static float *f32(PyObject *o, const char *name, npy_intp size, int writable) {
    return (float *)arr_ptr(o, name, NPY_FLOAT32, size, writable);
}

static npy_intp nelem(PyObject *o) { return PyArray_Check(o) ? PyArray_SIZE((PyArrayObject *)o) : -1; }

/* (rows, cols) of a 2D array, else ValueError. */
static int shape2(PyObject *o, const char *name, npy_intp *rows, npy_intp *cols) {
    if (!PyArray_Check(o) || PyArray_NDIM((PyArrayObject *)o) != 2) {
        PyErr_Format(PyExc_ValueError, "`%s` must be a 2D array (rows, classes).", name);
        return -1;
    }
    *rows = PyArray_DIM((PyArrayObject *)o, 0);
    *cols = PyArray_DIM((PyArrayObject *)o, 1);
    return 0;
}

/* ---- DensePlan --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    tt_dense *d;                  /* owned */
    long long batch, in, out;     /* x (batch, in), kernel (in, out), y (batch, out) */
    PyThread_type_lock lock;      /* owned; a plan's primitives share one scratchpad, so
                                     forward/backward of one plan run one at a time */
} DensePlanObject;

/* Takes the plan's lock, waiting with the GIL released if another thread holds it. */
static void lock_plan(DensePlanObject *self) {
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static PyObject *dense_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"batch", "in_features", "out_features", NULL};
    long long batch, in, out;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LLL:DensePlan", kw, &batch, &in, &out)) return NULL;
    tt_dense *d = NULL;
    tt_status st = tt_dense_create(&d, batch, in, out);
    if (st != TT_OK) return tt_py_raise(PyType_GetModuleByDef(type, &tt_module_def), st);
    PyThread_type_lock lock = PyThread_allocate_lock();
    DensePlanObject *self = lock ? (DensePlanObject *)type->tp_alloc(type, 0) : NULL;
    if (self == NULL) {
        if (lock) PyThread_free_lock(lock);
        tt_dense_destroy(d);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    self->lock = lock;
    self->d = d;
    self->batch = batch;
    self->in = in;
    self->out = out;
    return (PyObject *)self;
}

static void dense_dealloc(PyObject *o) {
    PyTypeObject *tp = Py_TYPE(o);
    tt_dense_destroy(((DensePlanObject *)o)->d);
    if (((DensePlanObject *)o)->lock) PyThread_free_lock(((DensePlanObject *)o)->lock);
    tp->tp_free(o);
    Py_DECREF(tp);
}

static PyObject *dense_forward(PyObject *o, PyObject *args) {
    DensePlanObject *self = (DensePlanObject *)o;
    PyObject *ox, *ow, *ob, *oy;
    if (!PyArg_ParseTuple(args, "OOOO:forward", &ox, &ow, &ob, &oy)) return NULL;
    const float *x = f32(ox, "x", (npy_intp)(self->batch * self->in), 0);
    const float *w = x ? f32(ow, "kernel", (npy_intp)(self->in * self->out), 0) : NULL;
    const float *b = w ? f32(ob, "bias", (npy_intp)self->out, 0) : NULL;
    float *y = b ? f32(oy, "y", (npy_intp)(self->batch * self->out), 1) : NULL;
    if (!y) return NULL;
    tt_status st;
    lock_plan(self);
    Py_BEGIN_ALLOW_THREADS
    st = tt_dense_forward(self->d, x, w, b, y);
    Py_END_ALLOW_THREADS
    PyThread_release_lock(self->lock);
    if (st != TT_OK) return tt_py_raise(PyType_GetModuleByDef(Py_TYPE(o), &tt_module_def), st);
    Py_RETURN_NONE;
}

static PyObject *dense_backward(PyObject *o, PyObject *args) {
    DensePlanObject *self = (DensePlanObject *)o;
    PyObject *ody, *ox, *ow, *odx, *odw, *odb;
    if (!PyArg_ParseTuple(args, "OOOOOO:backward", &ody, &ox, &ow, &odx, &odw, &odb)) return NULL;
    const npy_intp nx = (npy_intp)(self->batch * self->in), nw = (npy_intp)(self->in * self->out);
    const float *dy = f32(ody, "dy", (npy_intp)(self->batch * self->out), 0);
    const float *x = dy ? f32(ox, "x", nx, 0) : NULL;
    const float *w = x ? f32(ow, "kernel", nw, 0) : NULL;
    float *dw = w ? f32(odw, "dkernel", nw, 1) : NULL;
    float *db = dw ? f32(odb, "dbias", (npy_intp)self->out, 1) : NULL;
    if (!db) return NULL;
    float *dx = NULL;
    if (odx != Py_None && !(dx = f32(odx, "dx", nx, 1))) return NULL;
    tt_status st;
    lock_plan(self);
    Py_BEGIN_ALLOW_THREADS
    st = tt_dense_backward(self->d, dy, x, w, dx, dw, db);
    Py_END_ALLOW_THREADS
    PyThread_release_lock(self->lock);
    if (st != TT_OK) return tt_py_raise(PyType_GetModuleByDef(Py_TYPE(o), &tt_module_def), st);
    Py_RETURN_NONE;
}

static PyObject *dense_get(PyObject *o, void *which) {
    DensePlanObject *self = (DensePlanObject *)o;
    long long v = which == (void *)0 ? self->batch : which == (void *)1 ? self->in : self->out;
    return PyLong_FromLongLong(v);
}

static PyMethodDef dense_methods[] = {
    {"forward", dense_forward, METH_VARARGS,
     "forward(x, kernel, bias, y) -> None. y (batch, out) = x (batch, in) @ kernel (in, out) + bias (out); "
     "float32 C-contiguous arrays, y written in place. oneDNN inner product (forward_training)."},
    {"backward", dense_backward, METH_VARARGS,
     "backward(dy, x, kernel, dx, dkernel, dbias) -> None. Writes dkernel = x^T dy, dbias = sum(dy, 0) and, "
     "unless dx is None, dx = dy kernel^T (oneDNN backward_weights / backward_data)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef dense_getset[] = {
    {"batch", dense_get, NULL, "Batch size the plan was built for (int).", (void *)0},
    {"in_features", dense_get, NULL, "Input features (int).", (void *)1},
    {"out_features", dense_get, NULL, "Output features (int).", (void *)2},
    {NULL, NULL, NULL, NULL, NULL}};

static PyType_Slot dense_slots[] = {
    {Py_tp_new, dense_new},
    {Py_tp_dealloc, dense_dealloc},
    {Py_tp_methods, dense_methods},
    {Py_tp_getset, dense_getset},
    {Py_tp_doc, "DensePlan(batch, in_features, out_features): oneDNN inner-product primitives (forward_training, "
                "backward_data, backward_weights) for one batch size, Keras kernel layout (in, out). "
                "Not thread-safe."},
    {0, NULL}};

static PyType_Spec dense_spec = {"tflite_transfer._core.DensePlan", sizeof(DensePlanObject), 0,
                                 Py_TPFLAGS_DEFAULT, dense_slots};

/* ---- elementwise & losses ------------------------------------------------ */

#define RUN(module, call)                                     \
    do {                                                      \
        tt_status st_;                                        \
        Py_BEGIN_ALLOW_THREADS st_ = (call);                  \
        Py_END_ALLOW_THREADS if (st_ != TT_OK) return tt_py_raise(module, st_); \
    } while (0)

/* y = fn(x) elementwise over same-size float32 arrays (relu_forward, sigmoid_forward). */
static PyObject *elementwise(PyObject *m, PyObject *args, const char *fmt,
                             tt_status (*fn)(int64_t, const float *, float *)) {
    PyObject *ox, *oy;
    if (!PyArg_ParseTuple(args, fmt, &ox, &oy)) return NULL;
    npy_intp n = nelem(ox);
    const float *x = f32(ox, "x", -1, 0);
    float *y = x ? f32(oy, "y", n, 1) : NULL;
    if (!y) return NULL;
    RUN(m, fn(n, x, y));
    Py_RETURN_NONE;
}

static PyObject *py_relu_forward(PyObject *m, PyObject *args) {
    return elementwise(m, args, "OO:relu_forward", tt_relu_forward);
}

static PyObject *py_relu_backward(PyObject *m, PyObject *args) {
    PyObject *ody, *oy, *odx;
    if (!PyArg_ParseTuple(args, "OOO:relu_backward", &ody, &oy, &odx)) return NULL;
    npy_intp n = nelem(ody);
    const float *dy = f32(ody, "dy", -1, 0);
    const float *y = dy ? f32(oy, "y", n, 0) : NULL;
    float *dx = y ? f32(odx, "dx", n, 1) : NULL;
    if (!dx) return NULL;
    RUN(m, tt_relu_backward(n, dy, y, dx));
    Py_RETURN_NONE;
}

static PyObject *py_softmax_forward(PyObject *m, PyObject *args) {
    PyObject *ox, *oy;
    npy_intp r, c;
    if (!PyArg_ParseTuple(args, "OO:softmax_forward", &ox, &oy) || shape2(ox, "x", &r, &c) < 0) return NULL;
    const float *x = f32(ox, "x", -1, 0);
    float *y = x ? f32(oy, "y", r * c, 1) : NULL;
    if (!y) return NULL;
    RUN(m, tt_softmax_forward(r, c, x, y));
    Py_RETURN_NONE;
}

static PyObject *py_sigmoid_forward(PyObject *m, PyObject *args) {
    return elementwise(m, args, "OO:sigmoid_forward", tt_sigmoid_forward);
}

typedef tt_status (*loss_fwd_fn)(int64_t, int64_t, const float *, const float *, const float *, float, float *,
                                 double *);
typedef tt_status (*loss_bwd_fn)(int64_t, int64_t, const float *, const float *, const float *, float, float,
                                 float *);

static PyObject *loss_forward(PyObject *m, PyObject *args, const char *fmt, loss_fwd_fn fn) {
    PyObject *oz, *ot, *ow, *op;
    float ls;
    npy_intp r, c;
    if (!PyArg_ParseTuple(args, fmt, &oz, &ot, &ow, &ls, &op) || shape2(oz, "logits", &r, &c) < 0) return NULL;
    const float *z = f32(oz, "logits", -1, 0);
    const float *t = z ? f32(ot, "targets", r * c, 0) : NULL;
    float *p = t ? f32(op, "probs", r * c, 1) : NULL;
    if (!p) return NULL;
    const float *w = NULL;
    if (ow != Py_None && !(w = f32(ow, "sample_weight", r, 0))) return NULL;
    double loss = 0.0;
    RUN(m, fn(r, c, z, t, w, ls, p, &loss));
    return PyFloat_FromDouble(loss);
}

static PyObject *loss_backward(PyObject *m, PyObject *args, const char *fmt, loss_bwd_fn fn) {
    PyObject *op, *ot, *ow, *od;
    float ls, scale;
    npy_intp r, c;
    if (!PyArg_ParseTuple(args, fmt, &op, &ot, &ow, &ls, &scale, &od) || shape2(op, "probs", &r, &c) < 0)
        return NULL;
    const float *p = f32(op, "probs", -1, 0);
    const float *t = p ? f32(ot, "targets", r * c, 0) : NULL;
    float *d = t ? f32(od, "dlogits", r * c, 1) : NULL;
    if (!d) return NULL;
    const float *w = NULL;
    if (ow != Py_None && !(w = f32(ow, "sample_weight", r, 0))) return NULL;
    RUN(m, fn(r, c, p, t, w, ls, scale, d));
    Py_RETURN_NONE;
}

static PyObject *py_sxent_f(PyObject *m, PyObject *a) { return loss_forward(m, a, "OOOfO:softmax_xent_forward", tt_softmax_xent_forward); }
static PyObject *py_sxent_b(PyObject *m, PyObject *a) { return loss_backward(m, a, "OOOffO:softmax_xent_backward", tt_softmax_xent_backward); }
static PyObject *py_bce_f(PyObject *m, PyObject *a) { return loss_forward(m, a, "OOOfO:sigmoid_bce_forward", tt_sigmoid_bce_forward); }
static PyObject *py_bce_b(PyObject *m, PyObject *a) { return loss_backward(m, a, "OOOffO:sigmoid_bce_backward", tt_sigmoid_bce_backward); }

static PyObject *py_dropout_forward(PyObject *m, PyObject *args) {
    PyObject *ox, *oy, *om;
    float rate;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OfKOO:dropout_forward", &ox, &rate, &seed, &oy, &om)) return NULL;
    npy_intp n = nelem(ox);
    const float *x = f32(ox, "x", -1, 0);
    float *y = x ? f32(oy, "y", n, 1) : NULL;
    uint8_t *mask = y ? (uint8_t *)arr_ptr(om, "mask", NPY_UINT8, n, 1) : NULL;
    if (!mask) return NULL;
    RUN(m, tt_dropout_forward(n, x, rate, (uint64_t)seed, y, mask));
    Py_RETURN_NONE;
}

static PyObject *py_dropout_backward(PyObject *m, PyObject *args) {
    PyObject *ody, *om, *odx;
    float rate;
    if (!PyArg_ParseTuple(args, "OOfO:dropout_backward", &ody, &om, &rate, &odx)) return NULL;
    npy_intp n = nelem(ody);
    const float *dy = f32(ody, "dy", -1, 0);
    const uint8_t *mask = dy ? (const uint8_t *)arr_ptr(om, "mask", NPY_UINT8, n, 0) : NULL;
    float *dx = mask ? f32(odx, "dx", n, 1) : NULL;
    if (!dx) return NULL;
    RUN(m, tt_dropout_backward(n, dy, mask, rate, dx));
    Py_RETURN_NONE;
}

static PyObject *py_l2_forward(PyObject *m, PyObject *args) {
    PyObject *ow;
    float l2;
    if (!PyArg_ParseTuple(args, "Of:l2_forward", &ow, &l2)) return NULL;
    npy_intp n = nelem(ow);
    const float *w = f32(ow, "w", -1, 0);
    if (!w) return NULL;
    double pen = 0.0;
    RUN(m, tt_l2_forward(n, w, l2, &pen));
    return PyFloat_FromDouble(pen);
}

static PyObject *py_l2_backward(PyObject *m, PyObject *args) {
    PyObject *ow, *odw;
    float l2;
    if (!PyArg_ParseTuple(args, "OfO:l2_backward", &ow, &l2, &odw)) return NULL;
    npy_intp n = nelem(ow);
    const float *w = f32(ow, "w", -1, 0);
    float *dw = w ? f32(odw, "dw", n, 1) : NULL;
    if (!dw) return NULL;
    RUN(m, tt_l2_backward(n, w, l2, dw));
    Py_RETURN_NONE;
}

/* ---- optimizers ---------------------------------------------------------- */

/* Optional state buffer: None -> NULL (ok), else must match n. Returns 0/-1. */
static int opt_state(PyObject *o, const char *name, npy_intp n, float **out) {
    *out = NULL;
    if (o == Py_None) return 0;
    *out = f32(o, name, n, 1);
    return *out ? 0 : -1;
}

static PyObject *py_sgd_update(PyObject *m, PyObject *args) {
    PyObject *ov, *og, *om;
    float lr, mom;
    int nesterov;
    if (!PyArg_ParseTuple(args, "OOOffp:sgd_update", &ov, &og, &om, &lr, &mom, &nesterov)) return NULL;
    npy_intp n = nelem(ov);
    float *var = f32(ov, "var", -1, 1), *mm;
    const float *g = var ? f32(og, "grad", n, 0) : NULL;
    if (!g || opt_state(om, "m", n, &mm) < 0) return NULL;
    RUN(m, tt_sgd_update(n, var, g, mm, lr, mom, nesterov));
    Py_RETURN_NONE;
}

static PyObject *py_adam_update(PyObject *m, PyObject *args) {
    PyObject *ov, *og, *om, *ovv, *oh;
    float lr, b1, b2, eps;
    long long t;
    if (!PyArg_ParseTuple(args, "OOOOOffffL:adam_update", &ov, &og, &om, &ovv, &oh, &lr, &b1, &b2, &eps, &t))
        return NULL;
    npy_intp n = nelem(ov);
    float *var = f32(ov, "var", -1, 1), *mm = NULL, *vv = NULL, *vh = NULL;
    const float *g = var ? f32(og, "grad", n, 0) : NULL;
    if (!g || !(mm = f32(om, "m", n, 1)) || !(vv = f32(ovv, "v", n, 1)) || opt_state(oh, "vhat", n, &vh) < 0)
        return NULL;
    RUN(m, tt_adam_update(n, var, g, mm, vv, vh, lr, b1, b2, eps, t));
    Py_RETURN_NONE;
}

static PyObject *py_weight_decay_update(PyObject *m, PyObject *args) {
    PyObject *ov;
    float lr, wd;
    if (!PyArg_ParseTuple(args, "Off:weight_decay_update", &ov, &lr, &wd)) return NULL;
    float *var = f32(ov, "var", -1, 1);
    if (!var) return NULL;
    RUN(m, tt_weight_decay_update(nelem(ov), var, lr, wd));
    Py_RETURN_NONE;
}

static PyObject *py_rmsprop_update(PyObject *m, PyObject *args) {
    PyObject *ov, *og, *ovel, *omom, *oavg;
    float lr, rho, mom, eps;
    if (!PyArg_ParseTuple(args, "OOOOOffff:rmsprop_update", &ov, &og, &ovel, &omom, &oavg, &lr, &rho, &mom, &eps))
        return NULL;
    npy_intp n = nelem(ov);
    float *var = f32(ov, "var", -1, 1), *vel = NULL, *mm = NULL, *avg = NULL;
    const float *g = var ? f32(og, "grad", n, 0) : NULL;
    if (!g || !(vel = f32(ovel, "velocity", n, 1)) || opt_state(omom, "momentum", n, &mm) < 0 ||
        opt_state(oavg, "average_gradient", n, &avg) < 0)
        return NULL;
    RUN(m, tt_rmsprop_update(n, var, g, vel, mm, avg, lr, rho, mom, eps));
    Py_RETURN_NONE;
}

static PyMethodDef train_methods[] = {
    {"relu_forward", py_relu_forward, METH_VARARGS, "relu_forward(x, y): y = max(x, 0), float32."},
    {"relu_backward", py_relu_backward, METH_VARARGS, "relu_backward(dy, y, dx): dx = dy where y > 0 else 0."},
    {"softmax_forward", py_softmax_forward, METH_VARARGS, "softmax_forward(x, y): row softmax of x (rows, c)."},
    {"sigmoid_forward", py_sigmoid_forward, METH_VARARGS, "sigmoid_forward(x, y): y = 1 / (1 + exp(-x))."},
    {"softmax_xent_forward", py_sxent_f, METH_VARARGS,
     "softmax_xent_forward(logits, targets, sample_weight, label_smoothing, probs) -> float: writes probs "
     "(rows, c) and returns sum_i w_i CE_i (not divided by rows)."},
    {"softmax_xent_backward", py_sxent_b, METH_VARARGS,
     "softmax_xent_backward(probs, targets, sample_weight, label_smoothing, scale, dlogits): dlogits = scale w_i "
     "(probs - smoothed targets)."},
    {"sigmoid_bce_forward", py_bce_f, METH_VARARGS,
     "sigmoid_bce_forward(logits, targets, sample_weight, label_smoothing, probs) -> float sum_i w_i BCE_i."},
    {"sigmoid_bce_backward", py_bce_b, METH_VARARGS,
     "sigmoid_bce_backward(probs, targets, sample_weight, label_smoothing, scale, dlogits)."},
    {"dropout_forward", py_dropout_forward, METH_VARARGS,
     "dropout_forward(x, rate, seed, y, mask): inverted dropout; mask uint8 (same size) gets the kept elements."},
    {"dropout_backward", py_dropout_backward, METH_VARARGS, "dropout_backward(dy, mask, rate, dx)."},
    {"l2_forward", py_l2_forward, METH_VARARGS, "l2_forward(w, l2) -> float l2 * sum(w^2)."},
    {"l2_backward", py_l2_backward, METH_VARARGS, "l2_backward(w, l2, dw): dw += 2 l2 w."},
    {"sgd_update", py_sgd_update, METH_VARARGS, "sgd_update(var, grad, m|None, lr, momentum, nesterov): Keras SGD."},
    {"adam_update", py_adam_update, METH_VARARGS,
     "adam_update(var, grad, m, v, vhat|None, lr, beta_1, beta_2, epsilon, t): Keras 3 Adam step t >= 1."},
    {"weight_decay_update", py_weight_decay_update, METH_VARARGS,
     "weight_decay_update(var, lr, weight_decay): var -= var * weight_decay * lr (decoupled, AdamW)."},
    {"rmsprop_update", py_rmsprop_update, METH_VARARGS,
     "rmsprop_update(var, grad, velocity, momentum|None, average_gradient|None, lr, rho, momentum, epsilon)."},
    {NULL, NULL, 0, NULL}};

int tt_py_init_train(PyObject *module) {
    tt_module_state *st = tt_get_state(module);
    st->DensePlan = PyType_FromModuleAndSpec(module, &dense_spec, NULL);
    if (st->DensePlan == NULL) return -1;
    if (PyModule_AddObjectRef(module, "DensePlan", st->DensePlan) < 0) return -1;
    return PyModule_AddFunctions(module, train_methods);
}
