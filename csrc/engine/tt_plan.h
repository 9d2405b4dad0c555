/* tt_plan.h - the planning passes of plan.c, called by engine.c only. */
#ifndef TT_PLAN_H
#define TT_PLAN_H

#include "engine/tt_build.h"

/* Marks the ops output_tensor depends on (needed [n_ops]), the producer of every
 * tensor (producer [n_tensors], -1 for none) and propagates shapes
 * (shapes [n_tensors]) for batch x in_h x in_w (0: the model's own size). */
tt_status tt_plan_shapes(const tt_model *m, int32_t batch, int32_t in_h, int32_t in_w, int32_t output_tensor,
                         tt_shape *shapes, bool *needed, int32_t *producer);
/* A PAD feeding only one conv becomes that conv's padding (e->fold_pad). */
void tt_plan_pad_folding(tt_engine *e);
/* e->last_use and e->consumers; tensors of trainable ops live forever. */
void tt_plan_liveness(tt_engine *e);
/* e->fuse_add: residual ADDs below the boundary folded into their conv. */
void tt_plan_fusion(tt_engine *e);
/* e->fuse_dw: in an inference engine, 1x1 expand convs that may run the depthwise conv after them as a post-op. */
void tt_plan_dw_fusion(tt_engine *e);
/* True when no needed op mixes the images of the batch (chunks allowed). */
bool tt_plan_images_independent(const tt_engine *e);

#endif /* TT_PLAN_H */
