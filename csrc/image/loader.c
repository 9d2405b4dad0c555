/* loader.c - a pthread pool running tasks of independent items, and the batch loader
 * (read + decode + resize one file per item) that the Python Loader prefetches with.
 *
 * Tasks are served FIFO; any worker takes the next item of the oldest unfinished task.
 * Each item writes only its own output slot, so results never depend on the thread count
 * or on scheduling. */
#include "image/tt_image.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tt_task {
    tt_pool_fn fn;
    void *ctx;
    int64_t n_items;
    int64_t next;  /* next item to hand out */
    int64_t done;  /* items finished */
    tt_task *link; /* next task in the queue */
};

struct tt_pool {
    int num_threads;
    int started;           /* threads actually created */
    int stopping;          /* set by destroy */
    pthread_t *threads;    /* (num_threads) */
    pthread_mutex_t mu;
    pthread_cond_t work;   /* signalled when items are queued or stopping */
    pthread_cond_t finish; /* broadcast when a task completes */
    tt_task *head, *tail;  /* tasks with items not yet handed out */
};

static void *worker(void *arg) {
    tt_pool *p = (tt_pool *)arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping) pthread_cond_wait(&p->work, &p->mu);
        if (!p->head) break; /* stopping and nothing queued */
        tt_task *t = p->head;
        int64_t item = t->next++;
        if (t->next >= t->n_items) { /* all items handed out: unqueue */
            p->head = t->link;
            if (!p->head) p->tail = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        t->fn(t->ctx, item);
        pthread_mutex_lock(&p->mu);
        if (++t->done == t->n_items) pthread_cond_broadcast(&p->finish);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

tt_status tt_pool_create(int num_threads, tt_pool **out) {
    *out = NULL;
    if (num_threads < 1 || num_threads > 256)
        return tt_error(TT_INVALID_ARGUMENT, "num_threads must be in [1, 256]. Received: num_threads=%d",
                        num_threads);
    tt_pool *p = (tt_pool *)calloc(1, sizeof *p);
    if (!p) return tt_error(TT_OUT_OF_MEMORY, "out of memory creating a thread pool");
    p->threads = (pthread_t *)calloc((size_t)num_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return tt_error(TT_OUT_OF_MEMORY, "out of memory creating a thread pool");
    }
    p->num_threads = num_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->finish, NULL);
    for (int i = 0; i < num_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            tt_pool_destroy(p);
            return tt_error(TT_RUNTIME_ERROR, "pthread_create failed for thread %d of %d", i + 1, num_threads);
        }
        p->started++;
    }
    *out = p;
    return TT_OK;
}

int tt_pool_num_threads(const tt_pool *p) { return p ? p->num_threads : 1; }

tt_status tt_pool_submit(tt_pool *p, tt_pool_fn fn, void *ctx, int64_t n_items, tt_task **task) {
    *task = NULL;
    if (n_items < 0) return tt_error(TT_INVALID_ARGUMENT, "n_items must be >= 0. Received: %lld", (long long)n_items);
    tt_task *t = (tt_task *)calloc(1, sizeof *t);
    if (!t) return tt_error(TT_OUT_OF_MEMORY, "out of memory queuing a task");
    t->fn = fn;
    t->ctx = ctx;
    t->n_items = n_items;
    if (n_items > 0) {
        pthread_mutex_lock(&p->mu);
        if (p->tail)
            p->tail->link = t;
        else
            p->head = t;
        p->tail = t;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->mu);
    }
    *task = t;
    return TT_OK;
}

void tt_pool_wait(tt_pool *p, tt_task *t) {
    if (!t) return;
    if (t->n_items > 0) {
        pthread_mutex_lock(&p->mu);
        while (t->done < t->n_items) pthread_cond_wait(&p->finish, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    free(t);
}

tt_status tt_pool_run(tt_pool *p, tt_pool_fn fn, void *ctx, int64_t n_items) {
    if (!p) {
        for (int64_t i = 0; i < n_items; i++) fn(ctx, i);
        return TT_OK;
    }
    tt_task *t = NULL;
    tt_status s = tt_pool_submit(p, fn, ctx, n_items, &t);
    if (s != TT_OK) return s;
    tt_pool_wait(p, t);
    return TT_OK;
}

void tt_pool_destroy(tt_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->finish);
    free(p->threads);
    free(p);
}

tt_status tt_image_load(const char *path, const tt_load_config *cfg, uint8_t *out) {
    uint8_t *data = NULL, *pix = NULL;
    size_t size = 0;
    int h = 0, w = 0;
    tt_status s = tt_image_read_file(path, &data, &size);
    if (s != TT_OK) return s;
    s = tt_image_decode(data, size, cfg->max_pixels, &pix, &h, &w);
    free(data);
    if (s != TT_OK) {
        /* prefix the file name; the message of tt_image_decode is still in the buffer */
        char why[900];
        snprintf(why, sizeof why, "%s", tt_last_error());
        return tt_error(s, "cannot decode '%s': %s", path, why);
    }
    s = tt_resize_image(pix, TT_U8, h, w, 3, out, TT_U8, cfg->out_h, cfg->out_w, cfg->method, cfg->antialias,
                        cfg->crop_to_aspect_ratio);
    tt_image_free(pix);
    return s;
}

void tt_load_batch_item(void *ctx, int64_t item) {
    tt_load_batch *b = (tt_load_batch *)ctx;
    size_t img = (size_t)b->cfg.out_h * (size_t)b->cfg.out_w * 3;
    tt_status s = tt_image_load(b->paths[item], &b->cfg, b->out + (size_t)item * img);
    b->status[item] = s;
    if (s != TT_OK) {
        snprintf(b->messages[item], TT_LOAD_MSG, "%s", tt_last_error());
        memset(b->out + (size_t)item * img, 0, img);
    } else {
        b->messages[item][0] = '\0';
    }
    tt_clear_error();
}
