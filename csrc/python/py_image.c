/* py_image.c - Python bindings of the image pipeline (tt_image.h): decoding, resizing,
 * augmentation kernels, and the ThreadPool / Loader types. Argument checking of the public
 * API is done in Python (tflite_transfer/data.py, layers/preprocessing.py); the checks here
 * only keep C safe (dtype, contiguity, shapes). The GIL is released around C compute only.
 * Module state: the ThreadPool and Loader types. */
#include "python/py_common.h"

#include <stdlib.h>
#include <string.h>

#include "image/tt_image.h"

/* ------------------------------------------------------------------ helpers */

/* New reference to a C-contiguous aligned array of `x` with dtype uint8 or float32 (kept), ndim 4. */
static PyArrayObject *batch_arg(PyObject *x, const char *name, tt_dtype *dt) {
    if (!PyArray_Check(x)) {
        PyErr_Format(PyExc_TypeError, "`%s` must be a NumPy array. Received: %R", name, Py_TYPE(x));
        return NULL;
    }
    int t = PyArray_TYPE((PyArrayObject *)x);
    if (t != NPY_UINT8 && t != NPY_FLOAT32) {
        PyErr_Format(PyExc_ValueError, "`%s` must be uint8 or float32. Received: dtype=%R", name,
                     PyArray_DESCR((PyArrayObject *)x));
        return NULL;
    }
    if (PyArray_NDIM((PyArrayObject *)x) != 4) {
        PyErr_Format(PyExc_ValueError, "`%s` must be a 4D array (N, H, W, C). Received: ndim=%d", name,
                     PyArray_NDIM((PyArrayObject *)x));
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF(x, t, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!a) return NULL;
    npy_intp *d = PyArray_DIMS(a);
    if (d[1] <= 0 || d[2] <= 0 || d[3] <= 0 || d[1] > INT32_MAX || d[2] > INT32_MAX || d[3] > 65536) {
        PyErr_Format(PyExc_ValueError, "`%s` has an unsupported shape (%zd, %zd, %zd, %zd)", name, (Py_ssize_t)d[0],
                     (Py_ssize_t)d[1], (Py_ssize_t)d[2], (Py_ssize_t)d[3]);
        Py_DECREF(a);
        return NULL;
    }
    *dt = t == NPY_UINT8 ? TT_U8 : TT_F32;
    return a;
}

/* New reference to a C-contiguous array of `x` of type `npy_type` with exactly `count` elements. */
static PyArrayObject *param_arg(PyObject *x, const char *name, int npy_type, npy_intp count) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF(x, npy_type, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED |
                                                                           NPY_ARRAY_FORCECAST);
    if (!a) return NULL;
    if (PyArray_SIZE(a) != count) {
        PyErr_Format(PyExc_ValueError, "`%s` must have %zd values. Received: %zd", name, (Py_ssize_t)count,
                     (Py_ssize_t)PyArray_SIZE(a));
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static int npy_of(tt_dtype dt) { return dt == TT_U8 ? NPY_UINT8 : NPY_FLOAT32; }

/* ------------------------------------------------------------------ ThreadPool type */

typedef struct {
    PyObject_HEAD
    tt_pool *pool; /* owned */
} PoolObject;

static tt_pool *pool_arg(PyObject *module, PyObject *obj, int *ok) {
    *ok = 1;
    if (obj == Py_None) return NULL;
    PyTypeObject *tp = (PyTypeObject *)tt_get_state(module)->ThreadPool;
    if (!PyObject_TypeCheck(obj, tp)) {
        PyErr_Format(PyExc_TypeError, "`pool` must be a ThreadPool or None. Received: %R", Py_TYPE(obj));
        *ok = 0;
        return NULL;
    }
    return ((PoolObject *)obj)->pool;
}

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"num_threads", NULL};
    int n = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i", kw, &n)) return NULL;
    PoolObject *self = (PoolObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    tt_status s = tt_pool_create(n, &self->pool);
    if (s != TT_OK) {
        Py_DECREF(self);
        return tt_py_raise(PyType_GetModuleByDef(type, &tt_module_def), s);
    }
    return (PyObject *)self;
}

static void pool_dealloc(PoolObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    tt_pool *p = self->pool;
    self->pool = NULL;
    if (p) {
        Py_BEGIN_ALLOW_THREADS
        tt_pool_destroy(p);
        Py_END_ALLOW_THREADS
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *pool_get_num_threads(PoolObject *self, void *closure) {
    return PyLong_FromLong(tt_pool_num_threads(self->pool));
}

static PyGetSetDef pool_getset[] = {{"num_threads", (getter)pool_get_num_threads, NULL, "worker threads (int)", NULL},
                                    {NULL}};

static PyType_Slot pool_slots[] = {
    {Py_tp_new, pool_new},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_getset, pool_getset},
    {Py_tp_doc, "ThreadPool(num_threads) - pthread workers used by the augmentation kernels and resize()."},
    {0, NULL}};

static PyType_Spec pool_spec = {"tflite_transfer._core.ThreadPool", sizeof(PoolObject), 0,
                                Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, pool_slots};

/* ------------------------------------------------------------------ Loader type */

typedef struct job {
    long ticket;
    int waiting;                    /* a wait() is in progress (GIL released) */
    tt_task *task;                  /* owned until waited */
    tt_load_batch batch;            /* borrows paths from the loader, out from `out` */
    const char **paths;             /* (count) owned array of borrowed strings */
    tt_status *status;              /* (count) owned */
    char (*messages)[TT_LOAD_MSG];  /* (count) owned */
    Py_ssize_t count;
    PyObject *out;                  /* (count, H, W, 3) uint8 ndarray, owned reference */
    struct job *next;
} job;

typedef struct {
    PyObject_HEAD
    tt_pool *pool;       /* owned */
    char **paths;        /* (n_paths) owned, file-system encoded */
    Py_ssize_t n_paths;
    tt_load_config cfg;
    long next_ticket;
    job *jobs;           /* submitted, not yet waited */
} LoaderObject;

static void job_free(job *j) {
    if (!j) return;
    free(j->paths);
    free(j->status);
    free(j->messages);
    Py_XDECREF(j->out);
    free(j);
}

static void loader_release(LoaderObject *self) {
    /* Detach everything the workers read (jobs, pool, path list) while holding the GIL, then
     * wait for every task still running (their buffers are ours) and stop the threads with the
     * GIL released. A second close() from another thread meanwhile finds nothing left to free
     * (it used to free the path list under the workers of the first). */
    job *j = self->jobs;
    self->jobs = NULL;
    tt_pool *p = self->pool;
    self->pool = NULL;
    char **paths = self->paths; /* (n_paths) owned, freed below after the workers stopped */
    Py_ssize_t n_paths = self->n_paths;
    self->paths = NULL;
    self->n_paths = 0;
    Py_BEGIN_ALLOW_THREADS
    for (job *q = j; q; q = q->next) {
        if (q->task) tt_pool_wait(p, q->task);
        q->task = NULL;
    }
    tt_pool_destroy(p);
    Py_END_ALLOW_THREADS
    while (j) {
        job *nx = j->next;
        job_free(j);
        j = nx;
    }
    if (paths) {
        for (Py_ssize_t i = 0; i < n_paths; i++) free(paths[i]);
        free(paths);
    }
}

static PyObject *loader_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"paths", "height", "width", "interpolation", "antialias", "crop_to_aspect_ratio",
                         "max_pixels", "num_threads", NULL};
    PyObject *paths;
    int h, w, method, antialias, crop, nthreads;
    long long max_pixels;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiiippLi", kw, &paths, &h, &w, &method, &antialias, &crop,
                                     &max_pixels, &nthreads))
        return NULL;
    if (h <= 0 || w <= 0 || (method != TT_BILINEAR && method != TT_NEAREST)) {
        PyErr_Format(PyExc_ValueError, "bad Loader size %dx%d or interpolation %d", h, w, method);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(paths, "`paths` must be a sequence of str");
    if (!seq) return NULL;
    LoaderObject *self = (LoaderObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->paths = (char **)calloc(n > 0 ? (size_t)n : 1, sizeof(char *));
    if (!self->paths) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = NULL;
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, i), &b)) goto error;
        self->paths[i] = strdup(PyBytes_AS_STRING(b));
        Py_DECREF(b);
        if (!self->paths[i]) {
            PyErr_NoMemory();
            goto error;
        }
        self->n_paths = i + 1;
    }
    self->n_paths = n;
    self->cfg.out_h = h;
    self->cfg.out_w = w;
    self->cfg.method = (tt_interpolation)method;
    self->cfg.antialias = antialias;
    self->cfg.crop_to_aspect_ratio = crop;
    self->cfg.max_pixels = max_pixels;
    tt_status s = tt_pool_create(nthreads, &self->pool);
    if (s != TT_OK) {
        tt_py_raise(PyType_GetModuleByDef(type, &tt_module_def), s);
        goto error;
    }
    Py_DECREF(seq);
    return (PyObject *)self;
error:
    Py_DECREF(seq);
    Py_DECREF(self);
    return NULL;
}

static void loader_dealloc(LoaderObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    loader_release(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *loader_submit(LoaderObject *self, PyObject *arg) {
    if (!self->pool) {
        PyErr_SetString(PyExc_ValueError, "the Loader is closed");
        return NULL;
    }
    PyArrayObject *idx = (PyArrayObject *)PyArray_FROM_OTF(arg, NPY_INT64, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!idx) return NULL;
    if (PyArray_NDIM(idx) != 1) {
        PyErr_SetString(PyExc_ValueError, "`indices` must be a 1D integer array");
        Py_DECREF(idx);
        return NULL;
    }
    Py_ssize_t count = PyArray_DIM(idx, 0);
    const int64_t *ix = (const int64_t *)PyArray_DATA(idx);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (ix[i] < 0 || ix[i] >= self->n_paths) {
            PyErr_Format(PyExc_IndexError, "index %lld out of range for %zd files", (long long)ix[i], self->n_paths);
            Py_DECREF(idx);
            return NULL;
        }
    }
    job *j = (job *)calloc(1, sizeof *j);
    if (!j) {
        Py_DECREF(idx);
        return PyErr_NoMemory();
    }
    size_t c = count > 0 ? (size_t)count : 1;
    j->paths = (const char **)calloc(c, sizeof(char *));
    j->status = (tt_status *)calloc(c, sizeof(tt_status));
    j->messages = calloc(c, sizeof *j->messages);
    npy_intp dims[4] = {count, self->cfg.out_h, self->cfg.out_w, 3};
    j->out = PyArray_SimpleNew(4, dims, NPY_UINT8);
    if (!j->paths || !j->status || !j->messages || !j->out) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        job_free(j);
        Py_DECREF(idx);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) j->paths[i] = self->paths[ix[i]];
    Py_DECREF(idx);
    j->count = count;
    j->batch.cfg = self->cfg;
    j->batch.paths = j->paths;
    j->batch.out = (uint8_t *)PyArray_DATA((PyArrayObject *)j->out);
    j->batch.status = j->status;
    j->batch.messages = j->messages;
    tt_status s = tt_pool_submit(self->pool, tt_load_batch_item, &j->batch, count, &j->task);
    if (s != TT_OK) {
        job_free(j);
        return tt_py_raise(PyType_GetModule(Py_TYPE(self)), s);
    }
    j->ticket = self->next_ticket++;
    j->next = self->jobs;
    self->jobs = j;
    return PyLong_FromLong(j->ticket);
}

static PyObject *loader_wait(LoaderObject *self, PyObject *arg) {
    long ticket = PyLong_AsLong(arg);
    if (ticket == -1 && PyErr_Occurred()) return NULL;
    job **pp = &self->jobs;
    while (*pp && (*pp)->ticket != ticket) pp = &(*pp)->next;
    job *j = *pp;
    if (!j || j->waiting) {
        PyErr_Format(PyExc_ValueError, "no pending batch with ticket %ld", ticket);
        return NULL;
    }
    j->waiting = 1;
    tt_pool *p = self->pool;
    tt_task *t = j->task;
    Py_BEGIN_ALLOW_THREADS
    tt_pool_wait(p, t);
    Py_END_ALLOW_THREADS
    j->task = NULL;
    /* unlink (the list may have changed while the GIL was released) */
    for (pp = &self->jobs; *pp && *pp != j; pp = &(*pp)->next) {
    }
    if (*pp) *pp = j->next;
    PyObject *fails = PyList_New(0);
    if (!fails) {
        job_free(j);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < j->count; i++) {
        if (j->status[i] == TT_OK) continue;
        PyObject *item = Py_BuildValue("(nis)", i, (int)j->status[i], j->messages[i]);
        if (!item) {
            /* a message that is not UTF-8 (odd file name bytes): replace */
            PyErr_Clear();
            PyObject *m = PyUnicode_DecodeUTF8(j->messages[i], (Py_ssize_t)strlen(j->messages[i]), "replace");
            item = m ? Py_BuildValue("(niN)", i, (int)j->status[i], m) : NULL;
        }
        if (!item || PyList_Append(fails, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(fails);
            job_free(j);
            return NULL;
        }
        Py_DECREF(item);
    }
    PyObject *res = Py_BuildValue("(ON)", j->out, fails);
    job_free(j);
    return res;
}

static PyObject *loader_close(LoaderObject *self, PyObject *Py_UNUSED(ignored)) {
    for (job *j = self->jobs; j; j = j->next)
        if (j->waiting) {
            PyErr_SetString(PyExc_RuntimeError, "cannot close a Loader while another thread waits on it");
            return NULL;
        }
    loader_release(self);
    Py_RETURN_NONE;
}

static PyObject *loader_len(LoaderObject *self, void *closure) {
    return PyLong_FromSsize_t(self->n_paths); /* NULL with MemoryError set on failure, as a getter may return */
}

static PyMethodDef loader_methods[] = {
    {"submit", (PyCFunction)loader_submit, METH_O,
     "submit(indices) -> ticket. Queues loading files[indices] (int64 1D) into a new (B, H, W, 3) uint8 batch."},
    {"wait", (PyCFunction)loader_wait, METH_O,
     "wait(ticket) -> (images, failures). Blocks (GIL released) until the batch is loaded; failures is a list "
     "of (position, status, message) for files that could not be loaded (their images are zeros)."},
    {"close", (PyCFunction)loader_close, METH_NOARGS, "close() -> None. Waits for pending work and stops threads."},
    {NULL}};

static PyGetSetDef loader_getset[] = {{"num_files", (getter)loader_len, NULL, "number of files (int)", NULL}, {NULL}};

static PyType_Slot loader_slots[] = {
    {Py_tp_new, loader_new},
    {Py_tp_dealloc, loader_dealloc},
    {Py_tp_methods, loader_methods},
    {Py_tp_getset, loader_getset},
    {Py_tp_doc, "Loader(paths, height, width, interpolation, antialias, crop_to_aspect_ratio, max_pixels, "
                "num_threads) - loads batches of image files (read, decode, resize) on C threads."},
    {0, NULL}};

static PyType_Spec loader_spec = {"tflite_transfer._core.Loader", sizeof(LoaderObject), 0,
                                  Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, loader_slots};

/* ------------------------------------------------------------------ functions */

static PyObject *py_decode_image(PyObject *module, PyObject *args) {
    Py_buffer buf;
    long long max_pixels;
    if (!PyArg_ParseTuple(args, "y*L", &buf, &max_pixels)) return NULL;
    uint8_t *pix = NULL;
    int h = 0, w = 0;
    tt_status s;
    Py_BEGIN_ALLOW_THREADS
    s = tt_image_decode((const uint8_t *)buf.buf, (size_t)buf.len, max_pixels, &pix, &h, &w);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (s != TT_OK) return tt_py_raise(module, s);
    npy_intp dims[3] = {h, w, 3};
    PyObject *out = PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (out) memcpy(PyArray_DATA((PyArrayObject *)out), pix, (size_t)h * w * 3);
    tt_image_free(pix);
    return out;
}

static PyObject *py_read_file(PyObject *module, PyObject *args) {
    PyObject *pathb = NULL;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &pathb)) return NULL;
    uint8_t *data = NULL;
    size_t size = 0;
    tt_status s;
    const char *path = PyBytes_AS_STRING(pathb);
    Py_BEGIN_ALLOW_THREADS
    s = tt_image_read_file(path, &data, &size);
    Py_END_ALLOW_THREADS
    Py_DECREF(pathb);
    if (s != TT_OK) return tt_py_raise(module, s);
    PyObject *b = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
    free(data);
    return b;
}

static PyObject *py_image_info(PyObject *module, PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    int h = 0, w = 0;
    tt_status s = tt_image_info((const uint8_t *)buf.buf, (size_t)buf.len, &h, &w);
    PyBuffer_Release(&buf);
    if (s != TT_OK) return tt_py_raise(module, s);
    return Py_BuildValue("(ii)", h, w);
}

/* resize(pool, x, out_h, out_w, interpolation, antialias, crop_to_aspect_ratio, out_uint8) */
static PyObject *py_resize(PyObject *module, PyObject *args) {
    PyObject *poolo, *xo;
    int oh, ow, method, antialias, crop, out_u8;
    if (!PyArg_ParseTuple(args, "OOiiippp", &poolo, &xo, &oh, &ow, &method, &antialias, &crop, &out_u8)) return NULL;
    int ok;
    tt_pool *pool = pool_arg(module, poolo, &ok);
    if (!ok) return NULL;
    tt_dtype dt;
    PyArrayObject *x = batch_arg(xo, "images", &dt);
    if (!x) return NULL;
    if (oh <= 0 || ow <= 0) {
        Py_DECREF(x);
        return PyErr_Format(PyExc_ValueError, "`size` must be positive. Received: (%d, %d)", oh, ow);
    }
    npy_intp *d = PyArray_DIMS(x);
    npy_intp dims[4] = {d[0], oh, ow, d[3]};
    tt_dtype odt = out_u8 ? TT_U8 : TT_F32;
    PyObject *y = PyArray_SimpleNew(4, dims, npy_of(odt));
    if (!y) {
        Py_DECREF(x);
        return NULL;
    }
    tt_status s;
    Py_BEGIN_ALLOW_THREADS
    s = tt_resize_batch_forward(pool, PyArray_DATA(x), dt, PyArray_DATA((PyArrayObject *)y), odt, d[0], (int)d[1],
                                (int)d[2], (int)d[3], oh, ow, (tt_interpolation)method, antialias, crop);
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    if (s != TT_OK) {
        Py_DECREF(y);
        return tt_py_raise(module, s);
    }
    return y;
}

/* Shared tail of the augmentation bindings: parse pool + batch, make y. */
typedef struct aug_args {
    tt_pool *pool;
    PyArrayObject *x;
    tt_dtype dt;
    npy_intp n, h, w, c;
} aug_args;

static int aug_begin(PyObject *module, PyObject *poolo, PyObject *xo, aug_args *a) {
    int ok;
    a->pool = pool_arg(module, poolo, &ok);
    if (!ok) return -1;
    a->x = batch_arg(xo, "images", &a->dt);
    if (!a->x) return -1;
    npy_intp *d = PyArray_DIMS(a->x);
    a->n = d[0];
    a->h = d[1];
    a->w = d[2];
    a->c = d[3];
    return 0;
}

static PyObject *new_batch(npy_intp n, npy_intp h, npy_intp w, npy_intp c, tt_dtype dt) {
    npy_intp dims[4] = {n, h, w, c};
    return PyArray_SimpleNew(4, dims, npy_of(dt));
}

static PyObject *aug_end(PyObject *module, aug_args *a, PyArrayObject *p, PyObject *y, tt_status s) {
    Py_DECREF(a->x);
    Py_XDECREF(p);
    if (s != TT_OK) {
        Py_XDECREF(y);
        return tt_py_raise(module, s);
    }
    return y;
}

static PyObject *py_flip(PyObject *module, PyObject *args) {
    PyObject *poolo, *xo, *fo;
    if (!PyArg_ParseTuple(args, "OOO", &poolo, &xo, &fo)) return NULL;
    aug_args a;
    if (aug_begin(module, poolo, xo, &a) < 0) return NULL;
    PyArrayObject *f = param_arg(fo, "flags", NPY_UINT8, 2 * a.n);
    PyObject *y = f ? new_batch(a.n, a.h, a.w, a.c, a.dt) : NULL;
    if (!y) return aug_end(module, &a, f, NULL, TT_OK);
    tt_status s;
    Py_BEGIN_ALLOW_THREADS
    s = tt_flip_forward(a.pool, PyArray_DATA(a.x), PyArray_DATA((PyArrayObject *)y), a.dt, a.n, (int)a.h, (int)a.w,
                        (int)a.c, (const uint8_t *)PyArray_DATA(f));
    Py_END_ALLOW_THREADS
    return aug_end(module, &a, f, y, s);
}

static PyObject *py_affine(PyObject *module, PyObject *args) {
    PyObject *poolo, *xo, *to;
    int oh, ow, method, mode;
    float fill;
    if (!PyArg_ParseTuple(args, "OOOiiiif", &poolo, &xo, &to, &oh, &ow, &method, &mode, &fill)) return NULL;
    aug_args a;
    if (aug_begin(module, poolo, xo, &a) < 0) return NULL;
    PyArrayObject *t = param_arg(to, "transforms", NPY_FLOAT32, 8 * a.n);
    PyObject *y = t ? new_batch(a.n, oh > 0 ? oh : 0, ow > 0 ? ow : 0, a.c, a.dt) : NULL;
    if (!y) return aug_end(module, &a, t, NULL, TT_OK);
    tt_status s;
    Py_BEGIN_ALLOW_THREADS
    s = tt_affine_forward(a.pool, PyArray_DATA(a.x), PyArray_DATA((PyArrayObject *)y), a.dt, a.n, (int)a.h, (int)a.w,
                          (int)a.c, (const float *)PyArray_DATA(t), oh, ow, (tt_interpolation)method,
                          (tt_fill_mode)mode, fill);
    Py_END_ALLOW_THREADS
    return aug_end(module, &a, t, y, s);
}

static PyObject *py_crop(PyObject *module, PyObject *args) {
    PyObject *poolo, *xo, *oo;
    int oh, ow;
    if (!PyArg_ParseTuple(args, "OOOii", &poolo, &xo, &oo, &oh, &ow)) return NULL;
    aug_args a;
    if (aug_begin(module, poolo, xo, &a) < 0) return NULL;
    PyArrayObject *o = param_arg(oo, "offsets", NPY_INT32, 2 * a.n);
    PyObject *y = o ? new_batch(a.n, oh > 0 ? oh : 0, ow > 0 ? ow : 0, a.c, a.dt) : NULL;
    if (!y) return aug_end(module, &a, o, NULL, TT_OK);
    tt_status s;
    Py_BEGIN_ALLOW_THREADS
    s = tt_crop_forward(a.pool, PyArray_DATA(a.x), PyArray_DATA((PyArrayObject *)y), a.dt, a.n, (int)a.h, (int)a.w,
                        (int)a.c, (const int32_t *)PyArray_DATA(o), oh, ow);
    Py_END_ALLOW_THREADS
    return aug_end(module, &a, o, y, s);
}

static PyObject *color_op(PyObject *module, PyObject *args, int contrast) {
    PyObject *poolo, *xo, *po;
    float lo, hi;
    if (!PyArg_ParseTuple(args, "OOOff", &poolo, &xo, &po, &lo, &hi)) return NULL;
    aug_args a;
    if (aug_begin(module, poolo, xo, &a) < 0) return NULL;
    PyArrayObject *p = param_arg(po, contrast ? "factors" : "deltas", NPY_FLOAT32, a.n);
    PyObject *y = p ? new_batch(a.n, a.h, a.w, a.c, a.dt) : NULL;
    if (!y) return aug_end(module, &a, p, NULL, TT_OK);
    tt_status s;
    Py_BEGIN_ALLOW_THREADS
    if (contrast)
        s = tt_contrast_forward(a.pool, PyArray_DATA(a.x), PyArray_DATA((PyArrayObject *)y), a.dt, a.n, (int)a.h,
                                (int)a.w, (int)a.c, (const float *)PyArray_DATA(p), lo, hi);
    else
        s = tt_brightness_forward(a.pool, PyArray_DATA(a.x), PyArray_DATA((PyArrayObject *)y), a.dt, a.n, (int)a.h,
                                  (int)a.w, (int)a.c, (const float *)PyArray_DATA(p), lo, hi);
    Py_END_ALLOW_THREADS
    return aug_end(module, &a, p, y, s);
}

static PyObject *py_brightness(PyObject *module, PyObject *args) { return color_op(module, args, 0); }
static PyObject *py_contrast(PyObject *module, PyObject *args) { return color_op(module, args, 1); }

static PyMethodDef image_methods[] = {
    {"decode_image", py_decode_image, METH_VARARGS,
     "decode_image(data: bytes-like, max_pixels: int) -> uint8 (H, W, 3). ImageDecodeError if undecodable."},
    {"read_file", py_read_file, METH_VARARGS, "read_file(path) -> bytes (C fopen/fread; OSError on failure)."},
    {"image_info", py_image_info, METH_VARARGS, "image_info(data) -> (height, width) from the header."},
    {"resize", py_resize, METH_VARARGS,
     "resize(pool, x (N,H,W,C) uint8|float32, out_h, out_w, interpolation, antialias, crop, out_uint8) -> batch."},
    {"flip", py_flip, METH_VARARGS, "flip(pool, x, flags (N,2) uint8) -> new batch."},
    {"affine", py_affine, METH_VARARGS,
     "affine(pool, x, transforms (N,8) float32, out_h, out_w, interpolation, fill_mode, fill_value) -> new batch."},
    {"crop", py_crop, METH_VARARGS, "crop(pool, x, offsets (N,2) int32, out_h, out_w) -> new batch."},
    {"brightness", py_brightness, METH_VARARGS, "brightness(pool, x, deltas (N,), lo, hi) -> new batch."},
    {"contrast", py_contrast, METH_VARARGS, "contrast(pool, x, factors (N,), lo, hi) -> new batch."},
    {NULL, NULL, 0, NULL}};

int tt_py_init_image(PyObject *module) {
    tt_module_state *st = tt_get_state(module);
    st->ThreadPool = PyType_FromModuleAndSpec(module, &pool_spec, NULL);
    if (!st->ThreadPool || PyModule_AddObjectRef(module, "ThreadPool", st->ThreadPool) < 0) return -1;
    st->Loader = PyType_FromModuleAndSpec(module, &loader_spec, NULL);
    if (!st->Loader || PyModule_AddObjectRef(module, "Loader", st->Loader) < 0) return -1;
    if (PyModule_AddFunctions(module, image_methods) < 0) return -1;
    if (PyModule_AddIntConstant(module, "DEFAULT_MAX_PIXELS", TT_IMAGE_DEFAULT_MAX_PIXELS) < 0) return -1;
    return 0;
}
