"""TensorFlow's float MobileNetV2 1.0/224 ImageNet weights (batch norm folded), one .npy per tensor.

Source: webmachinelearning/webnn-polyfill (Apache-2.0) at a pinned commit, folder
test-data/models/mobilenetv2_nhwc/weights/: the tensors of TensorFlow's float
``mobilenet_v2_1.0_224.tflite`` (tflite_11_05_08 release), the model that
``tf2_mobilenet_v2_1.0_224_ptq.tflite`` was post-training quantized from.
Each file is downloaded from ``ORIGIN + name``, checked by SHA-256 and cached
under ``$TFLITE_TRANSFER_HOME/models/mobilenet_v2_1.0_224_float/weights/``
(offline: a ``TFLITE_TRANSFER_MIRROR`` folder holding
``mobilenet_v2_1.0_224_float/weights/<name>``). The files are assembled once into
a float32 .tflite (``architecture.build_tflite``) cached next to them.

Kernels are named ``Const_<n>.npy`` upstream, without their layer; ``FILES``
pairs each with its layer. The pairing was made by shape and by comparing with
the dequantized kernels of the ptq file (each kernel is within int8 rounding of
exactly one ptq kernel of its shape; the next closest is 20-1000x farther).

Missing upstream: the 1001-class logits kernel (``Const_222.npy``, over the
snapshot's 4 MiB limit), so these weights have no classifier:
``MobileNetV2(weights="imagenet_float", include_top=True)`` raises ValueError.
"""

COMMIT = "0c398a2013bfcf5b5b269c32289aa4eb13cb4f21"
ORIGIN = ("https://raw.githubusercontent.com/webmachinelearning/webnn-polyfill/" + COMMIT
          + "/test-data/models/mobilenetv2_nhwc/weights/")
SUBDIR = "mobilenet_v2_1.0_224_float/weights"

#: Keras layer name -> (kernel file, kernel SHA-256, bias file, bias SHA-256).
FILES = {
    "Conv1": (
        "Const_90.npy", "9855227c8a6729ac7b57282d463c767843650ab40621e525d625433bc4d74654",
        "MobilenetV2_Conv_Conv2D_bias.npy",
        "62d6429c15330894f7ae5a7bc667ae43b42833a3861f9938991984a7d3762e9e"),
    "expanded_conv_depthwise": (
        "Const_238.npy", "a208740ddf7d2abb8f2d730d67be680da7c27d0a7feea56db5b0d5aa1e20aec0",
        "MobilenetV2_expanded_conv_depthwise_depthwise_bias.npy",
        "9cae166dcc6624e94fb23820000374b120a7b0349a41a44ed1dc97b28a9b7743"),
    "expanded_conv_project": (
        "Const_167.npy", "bfcecc4c798f56ff7d222bbce4901ab712505bae84eb5af8c2da4b23d1dced72",
        "MobilenetV2_expanded_conv_project_Conv2D_bias.npy",
        "568dce0240799da8dcc096c378da084339e7d44e21eb06b8bb6320d542ad899a"),
    "block_1_expand": (
        "Const_165.npy", "91c63c47c9dffb5d1d80c537836563e4772cf0626412904daadd0e28824e251d",
        "MobilenetV2_expanded_conv_1_expand_Conv2D_bias.npy",
        "0dd132f9905ca7956bc6c0a98127181895c5803fd758a48ea6910e9d59877735"),
    "block_1_depthwise": (
        "Const_99.npy", "3722be3b0aff8f653ca64b4d811446ce510691585d558167018fe1f1e9ce6188",
        "MobilenetV2_expanded_conv_1_depthwise_depthwise_bias.npy",
        "08b454f0b7db0c08ebb5a974253044c577482f73596b180084fdd13d2e6b7bdb"),
    "block_1_project": (
        "Const_73.npy", "c038cf041a573b0cf666f92686c912e7fbc4ef3b1258edb84e3e1a24dc4a20d4",
        "MobilenetV2_expanded_conv_1_project_Conv2D_bias.npy",
        "48ab59103e85602f272944d27af7fa22a391fed9cb03ca470ebecf3d5d3d7002"),
    "block_2_expand": (
        "Const_3.npy", "cfd34135bd2b1c0c4d2ab93050a1c5eb829739b1480e5663499b77a5325b3545",
        "MobilenetV2_expanded_conv_2_expand_Conv2D_bias.npy",
        "a7db3896f913940033714a047f778905c76d587cda0bda09d58a94c243feb36b"),
    "block_2_depthwise": (
        "Const_119.npy", "9be4ba9685794eae91a676dcdbfa777559c2bf6734a4b7aa1171825f34d2439c",
        "MobilenetV2_expanded_conv_2_depthwise_depthwise_bias.npy",
        "b730ddf072682be8c3131ef5b0ea81f6022080238bef31fba9207562b0d7d6d1"),
    "block_2_project": (
        "Const_115.npy", "af9d8ec12d757bd45e19a862ceb146c4d265087f1b7d52b95782d544502dfda3",
        "MobilenetV2_expanded_conv_2_project_Conv2D_bias.npy",
        "02ac0bbf4fc256bcf31349d289099d4d63d1c982652647c81f05af1bd755a04e"),
    "block_3_expand": (
        "Const_255.npy", "b62aae94987735e248293191dc5c9586d02cad00f812ff5f1b885fd2a58d5838",
        "MobilenetV2_expanded_conv_3_expand_Conv2D_bias.npy",
        "b40a9798459f54f2a1fabd4682e0aeb73665c13cf061996ef3b251eeb42180d7"),
    "block_3_depthwise": (
        "Const_216.npy", "250f55501d7fd905fc190145fd0b20123c12036d1b681534c771a0ce990e1615",
        "MobilenetV2_expanded_conv_3_depthwise_depthwise_bias.npy",
        "000e30d4886c6b35122326b98e4c1d1e0435385b87acfe2e9e1a14febfa8318c"),
    "block_3_project": (
        "Const_157.npy", "e2a8bd5d5bf20bd0b883b95cb9ca090c27fa861b5e67125115aec44caeb8c74a",
        "MobilenetV2_expanded_conv_3_project_Conv2D_bias.npy",
        "145ec7c0440949f9aab35027a7963b8b6127ad08bdf6daadd99d068ae7d2a5ec"),
    "block_4_expand": (
        "Const_227.npy", "a88f5817e539dbd85f54440ed0b11580b27a030c2259a986a3580bfe973f9725",
        "MobilenetV2_expanded_conv_4_expand_Conv2D_bias.npy",
        "a744d8289844bb48096cdf53a5304d69002aa4345f617867aaf2a6e0e6bf7f1b"),
    "block_4_depthwise": (
        "Const_221.npy", "6e9d70b34377b9f44278054d37716a44d8022e3894740ada82c916c73166751b",
        "MobilenetV2_expanded_conv_4_depthwise_depthwise_bias.npy",
        "c8be1067c2b517b64c011b2bac727340d6b3f743a542e133cb56272ccc0fdc8d"),
    "block_4_project": (
        "Const_193.npy", "c0d7befa1ee39559ed39907ad5bb781627a5de3de8dd9f3f3028e2a852130345",
        "MobilenetV2_expanded_conv_4_project_Conv2D_bias.npy",
        "a8e7b9a1963f45c611fec6e8f744224eae6b15c27d27fa4a633bd5c5d0247d75"),
    "block_5_expand": (
        "Const_243.npy", "aff342db2140b4ee92c92334cc761afed43f204e77c8a29f92e7fd56437dfee2",
        "MobilenetV2_expanded_conv_5_expand_Conv2D_bias.npy",
        "0d7afe444b3c57e76e3c2571c042b6ef7184482c1226defdd8ddfe8a516ef059"),
    "block_5_depthwise": (
        "Const_102.npy", "324db2d42243440bf5f3df33365c98458356f687c4b16713326b6a7ff0cd0303",
        "MobilenetV2_expanded_conv_5_depthwise_depthwise_bias.npy",
        "e0855cdfa7022557e0558ac624a60d772292f177f4230f9c611f9387701dfc8c"),
    "block_5_project": (
        "Const_215.npy", "6ec358f76f2fbab8b94678784f300b5b63f893cb9edd8794670896f1373c0c18",
        "MobilenetV2_expanded_conv_5_project_Conv2D_bias.npy",
        "5cbf49e84c5b92ad63710a22490ccd9494a496ed7bf34fed35cdfafd2bdcd6c9"),
    "block_6_expand": (
        "Const_226.npy", "e1a20a16b7d25f959c708af9a919a50a5ed14bb124355d0858284f99439b472b",
        "MobilenetV2_expanded_conv_6_expand_Conv2D_bias.npy",
        "c44efe9eb94b9ab960ec4199e0b9e4b71c22ecd601baf85d9ae4eb1f9623af11"),
    "block_6_depthwise": (
        "Const_163.npy", "f96d2d46f7b5e5aa1db7d84c9a93feaf30fcc00b507ac0a88456a8806365b289",
        "MobilenetV2_expanded_conv_6_depthwise_depthwise_bias.npy",
        "b171a41afdf19d5a788c63690ecd0992696414be4a2c50cd0252aa5a815893ff"),
    "block_6_project": (
        "Const_229.npy", "36fdc36b6f07edb75adee264e71803a77faf27d648f9f27ad43ad69b2b8bb1c9",
        "MobilenetV2_expanded_conv_6_project_Conv2D_bias.npy",
        "3d210bb5aaefbf0457f5b8428c2de1d07fb287fe343ff6620771bc287fe04cb1"),
    "block_7_expand": (
        "Const_104.npy", "fa5cf9c53d1ef83619ee7d317a30b59c994f7ec152cb1ada73be53de5ff81a79",
        "MobilenetV2_expanded_conv_7_expand_Conv2D_bias.npy",
        "c50f4a492a63425ba464828620d9314ec2dccfac91f848043ffc8ae8bf1adad5"),
    "block_7_depthwise": (
        "Const_254.npy", "7233a93e0f7a84a89716ced679b13772f25975484be8be3e1d21d9ae578b3989",
        "MobilenetV2_expanded_conv_7_depthwise_depthwise_bias.npy",
        "6b69a7f78f7b72e15db1f537c81e285c14ffbd45510685d942028571a3933ba4"),
    "block_7_project": (
        "Const_143.npy", "0b56ccf714ad6e62c9e1c7602058d59c3002f1a414b31f225b2459e829aae389",
        "MobilenetV2_expanded_conv_7_project_Conv2D_bias.npy",
        "4bd89a8a518ae8583400309f3b694a8acb2825d5a4ec9b73254bd7512f2d2c08"),
    "block_8_expand": (
        "Const_25.npy", "25999b42dcc6fe3d1263f2738f77a9da0cee7055c6a86b070ebcfcc3d0a69171",
        "MobilenetV2_expanded_conv_8_expand_Conv2D_bias.npy",
        "c4f16aa457718f0fff3a1fade70004bd1d6cd3c29b53805dbc8af5e383d1aad8"),
    "block_8_depthwise": (
        "Const_142.npy", "3548c22930279770a49a05cfbae078699a8e470ea784da02ec7942ebd664c63b",
        "MobilenetV2_expanded_conv_8_depthwise_depthwise_bias.npy",
        "1408e76f26fc94b66ade7b9f8c2d1b803c4901b1cca236cb86226f6a200027ab"),
    "block_8_project": (
        "Const_202.npy", "36566f6aecc59d46764dae9d477dc9ba95a12fae820f3791e1ac01305d621126",
        "MobilenetV2_expanded_conv_8_project_Conv2D_bias.npy",
        "f2b7a71a5eb0a2262490546469187efed6caff8cb4a45370a2a54e0263e2f07d"),
    "block_9_expand": (
        "Const_225.npy", "9068ccf553faefced8b14314e524d9e0bbdfeb0b92884706cbda7049b4bacc66",
        "MobilenetV2_expanded_conv_9_expand_Conv2D_bias.npy",
        "9b45fcc1960d29a15ca4e0b43dba31c7cec6f45c42b4fe09fde3495e250bb6f1"),
    "block_9_depthwise": (
        "Const_129.npy", "2f2ea7574cb3c22dbbff386e3d38f386f15f608dd0ac6bf472037f93ca5a10dd",
        "MobilenetV2_expanded_conv_9_depthwise_depthwise_bias.npy",
        "e642816cd42984b3cc373121a6d909716d1d0bb7b9d2a0642140e8be13a2c0f7"),
    "block_9_project": (
        "Const_98.npy", "f36a783f62dd442950eb111f39e0df81c005f4c56767adeac46695b511593a11",
        "MobilenetV2_expanded_conv_9_project_Conv2D_bias.npy",
        "a8ebd25cb1bd0f4145cef57fb0305f622ffb928c63cd579a0072112af531d871"),
    "block_10_expand": (
        "Const_169.npy", "eba1a6cb79496218fb7442ec754a4f54c6c1d9599419ce369cfdad641cd2dc9c",
        "MobilenetV2_expanded_conv_10_expand_Conv2D_bias.npy",
        "a4b0e11b6fcaa3e939b2b51a1fe0d6eb1ad66873cff08835623e2a0876b3ab12"),
    "block_10_depthwise": (
        "Const_2.npy", "2e67caf8f3e0c563c66292dd2a9745e635f78afb394032ae2d4ea506e7163589",
        "MobilenetV2_expanded_conv_10_depthwise_depthwise_bias.npy",
        "851fc4565995e71ab688f599877e0642d476580a7aa043a626f1e5c41722347a"),
    "block_10_project": (
        "Const_246.npy", "dfd139b6c9d6224d6cff6ca703cde76888903ff1ebc371216e44a9dd1b7a7dd5",
        "MobilenetV2_expanded_conv_10_project_Conv2D_bias.npy",
        "a208c06e7a86628e48476eab9832a45726fcab732c4c09edd2bcae752cf899e7"),
    "block_11_expand": (
        "Const_162.npy", "5a3a9c119011c3ef132023497d04541d7e3cf215e429321f9744e6c9111e4d7e",
        "MobilenetV2_expanded_conv_11_expand_Conv2D_bias.npy",
        "e64960317dc594b9a2fa4ad0fbb74ba5ae44aa291f4b4d825796d6b196baf9a2"),
    "block_11_depthwise": (
        "Const_87.npy", "cea45dc2b7b7ebc5fb6c048e387d963f0d64e8b70aac1553391e9cc71cc7ab1f",
        "MobilenetV2_expanded_conv_11_depthwise_depthwise_bias.npy",
        "70914c3cb971621291d895f3edac4b12f7b12d1b85b3438b541d751d5791f184"),
    "block_11_project": (
        "Const_106.npy", "65d02e9a3d6a950d7e153a1e2bec292ceba042edea7fc02f04933acbf9c52c91",
        "MobilenetV2_expanded_conv_11_project_Conv2D_bias.npy",
        "4165c3957e1b2847925db1072052773acc8f7789ad273fd0d6afca95e7537d30"),
    "block_12_expand": (
        "Const_52.npy", "ba6436092e716ca586818234c1c719d5ad456c9118e0b5572283fd24710e8eac",
        "MobilenetV2_expanded_conv_12_expand_Conv2D_bias.npy",
        "d59d48955551d2f13e2eed63b13b4adbe3792c9b4388066feb98b13ffaa90ba1"),
    "block_12_depthwise": (
        "Const_22.npy", "a7c57854e56a8398a1a95b3ea572922995e9d0456971f6b78cfd02d3c48c094a",
        "MobilenetV2_expanded_conv_12_depthwise_depthwise_bias.npy",
        "ac8c80e04cb567dff63d8351f28539d708e2f4f52d031f618d4da907506a6c23"),
    "block_12_project": (
        "Const_40.npy", "fa885807dd501a07be880e7b2adb243a0338ea782ddbe3a75eacc015d42e992a",
        "MobilenetV2_expanded_conv_12_project_Conv2D_bias.npy",
        "d042ac897db3dc726cabb0f35db910fe68ce5a24cfb9a7c9850d90ff4cc6ae38"),
    "block_13_expand": (
        "Const_114.npy", "9268a8d1615ec7d679b7c21fd74539c00686071df84ba52ae0ab579e9bb44bdf",
        "MobilenetV2_expanded_conv_13_expand_Conv2D_bias.npy",
        "cd365c290cbf1a2bb9f176ebb1835f7e723d5c172837aa6a59b2ec6a23496609"),
    "block_13_depthwise": (
        "Const_65.npy", "b3f88f49ccafc3f1abfc8f5017ced1b4ed7d7f7bca3fb29ea4639581276273da",
        "MobilenetV2_expanded_conv_13_depthwise_depthwise_bias.npy",
        "f21408ec0043c07179efb6a5bb6432406c6da5ead48f104a92d7a7a3f002e1a7"),
    "block_13_project": (
        "Const_242.npy", "9ec823ed72041a4ae1c8e0ddeef928f910ad2fcf0efc44c3f77843ba80fac579",
        "MobilenetV2_expanded_conv_13_project_Conv2D_bias.npy",
        "863ce80d603c512ea0bf70ee2e13ec70507f2799b80e9646a307cdc70dab7ef6"),
    "block_14_expand": (
        "Const_203.npy", "37d3c09a2bb2389072e463e0af651893717140547bc3d0d4d660997aab5dcfc5",
        "MobilenetV2_expanded_conv_14_expand_Conv2D_bias.npy",
        "0e4636a4128318a5655c30edcfa7b1c30801f5bd6b4fb9a788d2c6bfa11d16b5"),
    "block_14_depthwise": (
        "Const_250.npy", "1ab1291a4eff231635a438e223b0b0230e3193309789102afd5c417bd1da19af",
        "MobilenetV2_expanded_conv_14_depthwise_depthwise_bias.npy",
        "03c636726da8ec93e8b98b0d4a8d5d480af4d0091f2450db41795e0c2f22473c"),
    "block_14_project": (
        "Const_92.npy", "6d9de79df180c6b386da00cf57dcc68ec7c5b0d7b52455d0eefdbce43fc086b5",
        "MobilenetV2_expanded_conv_14_project_Conv2D_bias.npy",
        "3b7b424a0c73229cb645a7d1037ad4ca8ae25579317d16587e544d08fdb886da"),
    "block_15_expand": (
        "Const_133.npy", "ad0972a9b26339f989b8a209a5f65bfdb267724e2708b1ee133d2a3ca7b681fa",
        "MobilenetV2_expanded_conv_15_expand_Conv2D_bias.npy",
        "811c2242c33c160fbb847cb78e02008a197dd109919198cb9b1ca9267c72ac19"),
    "block_15_depthwise": (
        "Const_130.npy", "45b1070a643c5a6f92162cef8077c4eb91ca61fbab8928c40a3358ca6ee3d71c",
        "MobilenetV2_expanded_conv_15_depthwise_depthwise_bias.npy",
        "8a882378d646c8446b1822dd9293d165566116f3b28dda9105bf7dfbbf348060"),
    "block_15_project": (
        "Const_258.npy", "b96326b08c49135ab80060ded31ab48612a993b72b40844d4e141609ca969882",
        "MobilenetV2_expanded_conv_15_project_Conv2D_bias.npy",
        "016269e233fcc1402fad8b110d0e7338b4e19a5d9eed2456fe4dfe6760e4a6c7"),
    "block_16_expand": (
        "Const_60.npy", "c9ef6d16a39490a27eda9131a22634c9ff2d90b41091067d12ef8522136710f3",
        "MobilenetV2_expanded_conv_16_expand_Conv2D_bias.npy",
        "9feb67a39603a3afb6e52514b9aefddd6c3592f1951a03677eebcef9266b8d44"),
    "block_16_depthwise": (
        "Const_248.npy", "fa5e1a2ca137b3727beba3aada553e992f223db72bc3597eb7599903ec329a9d",
        "MobilenetV2_expanded_conv_16_depthwise_depthwise_bias.npy",
        "1be831ca509e982a8de97254390e8c8010ee33d6d13fb31ef6c606f70f111295"),
    "block_16_project": (
        "Const_100.npy", "d6f2c65c196776f3cf18968be5bb37c615b63fa3403df22eb02bb96311766117",
        "MobilenetV2_expanded_conv_16_project_Conv2D_bias.npy",
        "fd239a7c20a0454ec6df558954b7d2470a078bcd036bff332bfe94e019b45d26"),
    "Conv_1": (
        "Const_71.npy", "c0f5fdb127b2ec74ed94e6a639e803a44a9a9ea1046bd0dd50683f9721f77ea8",
        "MobilenetV2_Conv_1_Conv2D_bias.npy",
        "f801b8df9f15e671831e10ba78d857c6af957f58e1b50a1bfc5cdd9d9f1f1601"),
}

#: The logits bias (1001,) is present; its kernel is not.
LOGITS_BIAS = ("MobilenetV2_Logits_Conv2d_1c_1x1_Conv2D_bias.npy",
               "61c7115daedb87ce3620c90ddae24422594e4523334f112f12e294e719a7e22c")
