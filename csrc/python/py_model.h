/* py_model.h - the Model object of py_model.c, shared with py_engine.c (the
 * TrainEngine keeps its Model alive and runs under its lock). Binding layer only. */
#ifndef TT_PY_MODEL_H
#define TT_PY_MODEL_H

#include "python/py_common.h"

#include <pythread.h>

#include "engine/tt_engine.h"

#define MODEL_CACHE 8

typedef struct engine_entry {
    tt_engine *engine;  /* owned; NULL = empty slot */
    int32_t batch, height, width, output;
    tt_precision precision;
    int32_t num_threads; /* the thread setting it was built with (rebuilt when the setting changes) */
    uint64_t last_used; /* LRU tick */
} engine_entry;

typedef struct ModelObject {
    PyObject_HEAD
    tt_model *model;            /* owned */
    PyObject *name;             /* str, prefixed to error messages */
    PyThread_type_lock lock;    /* serializes engine cache access, runs and set_tensor */
    engine_entry cache[MODEL_CACHE];
    uint64_t tick;
    int32_t last_run_threads;   /* OpenMP threads of the last run (0: none yet) */
} ModelObject;

/* Takes the model lock, releasing the GIL while waiting. */
void tt_py_lock_model(ModelObject *self);
/* Raises for a failed status with the model name in front of the message; returns NULL. */
PyObject *tt_py_raise_named(PyObject *module, PyObject *name, tt_status status);

#endif /* TT_PY_MODEL_H */
