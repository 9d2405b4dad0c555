/* tt_ops.h - the op table: one tt_op_kind entry (model/tt_model.h) per op
 * family file in ops/, collected by table.c. The reader gets the table from
 * tt_ops_resolver() (as TFLite Micro's interpreter gets its op resolver); the
 * planner and the engine reach an op's shape rule, forward and backward
 * through op->kind. Adding an op: write ops/<family>.c with its parse, check,
 * shape, forward (and backward) functions and a tt_op_kind, then list it here
 * and in table.c.
 */
#ifndef TT_OPS_H
#define TT_OPS_H

#include "model/tt_model.h"

extern const tt_op_kind tt_op_conv_2d, tt_op_depthwise_conv_2d;     /* conv.c */
extern const tt_op_kind tt_op_fully_connected;                      /* dense.c */
extern const tt_op_kind tt_op_average_pool_2d, tt_op_max_pool_2d, tt_op_mean; /* pool.c */
extern const tt_op_kind tt_op_add, tt_op_softmax;                   /* eltwise.c */
extern const tt_op_kind tt_op_pad, tt_op_reshape, tt_op_concatenation, tt_op_quantize,
    tt_op_dequantize;                                               /* shape.c */

/* Helpers shared by op files (not for the engine). */
struct tt_engine;
/* Appends an in-place eltwise step on value v of op i (eltwise.c). */
tt_status tt_eltwise_forward_inplace(struct tt_engine *e, int32_t i, int32_t v, int alg, float alpha, float beta);
/* Shape rule y.shape == x.shape (eltwise.c). */
tt_status tt_same_shape(const tt_model *m, int32_t i, const tt_shape *shapes, tt_shape *out);

/* The table of every supported op (static storage, never NULL). */
const tt_op_resolver *tt_ops_resolver(void);

#endif /* TT_OPS_H */
