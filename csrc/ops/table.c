/* table.c - the op table (tt_ops.h): the order of the reader's "supported:" list. */
#include "ops/tt_ops.h"

static const tt_op_kind *const kinds[] = {
    &tt_op_conv_2d, &tt_op_depthwise_conv_2d, &tt_op_add,     &tt_op_average_pool_2d,
    &tt_op_max_pool_2d, &tt_op_mean,         &tt_op_pad,      &tt_op_reshape,
    &tt_op_fully_connected, &tt_op_softmax,  &tt_op_concatenation, &tt_op_quantize,
    &tt_op_dequantize,
};

static const tt_op_resolver resolver = {(int32_t)(sizeof kinds / sizeof kinds[0]), kinds};

const tt_op_resolver *tt_ops_resolver(void) { return &resolver; }
