/* int8_dw_fusion.c - which implementation oneDNN gives an int8 expand 1x1 conv with
 * the depthwise 3x3 after it as a depthwise post-op, for each way of attaching the
 * quantization scales. Built and run by benchmarks/probe_int8_fusion.py against the
 * oneDNN the package links; prints one line per case: the case, then the
 * implementation name (ref_fused_convolution = no fusion: the two convs one after the
 * other) or the creation status.
 *
 * The shape is MobileNetV2's block 2 expand at micro-batch 8: x u8 [8, 24, 56, 56]
 * (NHWC), w s8 [144, 24, 1, 1] with per-output-channel scales, y u8 [8, 144, 56, 56];
 * ReLU6 (clip 0..6 on real values) after both convs. The file's depthwise weights
 * have per-channel scales (mask over {G, O/G} = 3), and its ReLU6 output a scale, so
 * "dw weights scales" and "dw dst scale" are what the engine would need. */
#include <oneapi/dnnl/dnnl.h>

#include <stdio.h>

static const char *probe(int dw_wmask, int dw_dst_scale, int stride) {
    static char msg[256];
    dnnl_engine_t eng = NULL;
    dnnl_memory_desc_t src = NULL, wei = NULL, bia = NULL, dst = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_dims_t sd = {8, 24, 56, 56}, wd = {144, 24, 1, 1}, bd = {144}, dd = {8, 144, 56, 56};
    dnnl_dims_t st = {1, 1}, dl = {0, 0}, pl = {0, 0}, pr = {0, 0};
    dnnl_status_t s = dnnl_engine_create(&eng, dnnl_cpu, 0);
    if (s == dnnl_success) s = dnnl_memory_desc_create_with_tag(&src, 4, sd, dnnl_u8, dnnl_nhwc);
    if (s == dnnl_success) s = dnnl_memory_desc_create_with_tag(&wei, 4, wd, dnnl_s8, dnnl_format_tag_any);
    if (s == dnnl_success) s = dnnl_memory_desc_create_with_tag(&bia, 1, bd, dnnl_f32, dnnl_a);
    if (s == dnnl_success) s = dnnl_memory_desc_create_with_tag(&dst, 4, dd, dnnl_u8, dnnl_format_tag_any);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_SRC, 0);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_WEIGHTS, 1);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_DST, 0);
    if (s == dnnl_success && dw_wmask >= 0)
        s = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS, dw_wmask);
    if (s == dnnl_success && dw_dst_scale)
        s = dnnl_primitive_attr_set_scales_mask(attr, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_DST, 0);
    if (s == dnnl_success) s = dnnl_post_ops_create(&po);
    if (s == dnnl_success) s = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_clip, 0.f, 6.f);
    if (s == dnnl_success) s = dnnl_post_ops_append_dw(po, dnnl_s8, dnnl_f32, dnnl_u8, 3, stride, 1);
    if (s == dnnl_success) s = dnnl_post_ops_append_eltwise(po, dnnl_eltwise_clip, 0.f, 6.f);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (s == dnnl_success)
        s = dnnl_convolution_forward_primitive_desc_create(&pd, eng, dnnl_forward_inference, dnnl_convolution_direct,
                                                           src, wei, bia, dst, st, dl, pl, pr, attr);
    const char *impl = NULL;
    if (s == dnnl_success) dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (impl)
        snprintf(msg, sizeof msg, "%s", impl);
    else
        snprintf(msg, sizeof msg, "not created (dnnl_status_t %d)", (int)s);
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    dnnl_memory_desc_destroy(src);
    dnnl_memory_desc_destroy(wei);
    dnnl_memory_desc_destroy(bia);
    dnnl_memory_desc_destroy(dst);
    dnnl_engine_destroy(eng);
    return msg;
}

int main(void) {
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN %d.%d.%d (%s)\n", v->major, v->minor, v->patch, v->hash);
    static const struct {
        const char *name;
        int dw_wmask, dw_dst_scale;
    } cases[] = {
        {"dw weights scales per channel + dw dst scale (what the file needs)", 3, 1},
        {"dw weights scales per tensor + dw dst scale", 0, 1},
        {"dw weights scales per channel, no dw dst scale", 3, 0},
        {"dw dst scale only, no dw weights scales", -1, 1},
        {"no dw scales at all (integer dw output)", -1, 0},
    };
    printf("implementation per case (ref_fused_convolution: not fused, the two convs one after the other)\n");
    for (int stride = 1; stride <= 2; stride++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
            printf("stride %d, %-66s %s\n", stride, cases[k].name,
                   probe(cases[k].dw_wmask, cases[k].dw_dst_scale, stride));
    return 0;
}
