/* conv_geo.h - private to ops/conv.c and ops/conv_fused.c: a convolution's
 * geometry and the fused expand + depthwise pair's entry points. */
#ifndef TT_CONV_GEO_H
#define TT_CONV_GEO_H

#include "engine/tt_build.h"

/* Geometry and memory descriptors of op i (shared by forward and backward). */
typedef struct conv_geo {
    int32_t xv;                      /* value of x (the PAD's input when a PAD is folded) */
    const tt_tensor *w, *b;          /* filter, bias (NULL if absent) */
    dnnl_dims_t strides, dilates, pad_l, pad_r;
    dnnl_memory_desc_t w_user;       /* the TFLite filter over oneDNN's logical dims */
    dnnl_memory_desc_t w_any, b_md;  /* b_md NULL without bias */
    dnnl_memory_desc_t src_any, dst_any;
} conv_geo;

/* Fills g for op i (CONV_2D or DEPTHWISE_CONV_2D). with_x false: op i's input has
 * no value yet (a depthwise fused into the conv before it); g->xv is -1 and the
 * shapes come from the plan. */
tt_status tt_conv_geometry_of(tt_engine *e, int32_t i, bool with_x, conv_geo *g);

/* Builds 1x1 conv i with depthwise j (e->fuse_dw[i] == j) as one primitive; *fused
 * false: nothing was built and the pair runs as two convolutions (conv_fused.c). */
tt_status tt_conv_forward_dw_fused(tt_engine *e, int32_t i, const conv_geo *g, int32_t j, bool *fused);
/* The kernel name prefix op i must run when a proposed pair runs unfused; NULL: any. */
const char *tt_conv_dw_pair_kernel(const tt_engine *e, int32_t i);
/* The dst md for depthwise i's own-layout attempt (dst_any unless an unfused pair on NHWC). */
const_dnnl_memory_desc_t tt_conv_dw_pair_dst(tt_engine *e, int32_t i, const_dnnl_memory_desc_t src,
                                              const_dnnl_memory_desc_t dst_any);
/* Moves *pd to its first implementation whose name starts with prefix (NULL: no move). */
void tt_conv_pd_prefer(dnnl_primitive_desc_t *pd, const char *prefix);

#endif
