"""Typed configuration of asl-edge.

The sections and key names are ActionFormer's (``dataset``, ``model``, ``train_cfg``,
``test_cfg``, ``opt``, ``loader``) and every default equals ActionFormer's own default,
so an ActionFormer YAML file merged onto these dataclasses means what it meant there.
ASL adds ``model.tca`` (the fused temporal-channel attention) and ``dataset.class_names``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional, Union


@dataclass
class DatasetConfig:
    json_file: Optional[str] = None
    feat_folder: Union[str, List[str], None] = None
    file_prefix: Optional[str] = None
    file_ext: str = ".npy"
    # frames between two consecutive clip features
    feat_stride: int = 16
    # frames in the clip that produced one feature
    num_frames: int = 32
    # the rate the features were extracted at; when set, it is every video's fps and a video's own
    # fps is not used (ActionFormer's rule, asl_edge.postprocess.resolve_fps)
    default_fps: Optional[float] = None
    # feature channels; a list means several streams concatenated along channels
    input_dim: Union[int, List[int]] = 2304
    num_classes: int = 97
    downsample_rate: int = 1
    max_seq_len: int = 2304
    trunc_thresh: float = 0.5
    crop_ratio: Optional[List[float]] = None
    # training crops that end inside an action, so that a model learns to speak early in live
    # streaming (the newest window's end cuts actions in progress): the share of crops placed so,
    # and the least of the action each keeps (it is kept even below trunc_thresh)
    right_cut_prob: float = 0.0
    right_cut_min: float = 0.25
    # resize every feature sequence to max_seq_len (ActivityNet)
    force_upsampling: bool = False
    # one name per class id; None means "class_<id>"
    class_names: Optional[List[str]] = None
    # the clip extractor that made the features (asl-edge extract-features writes both), so that
    # live streaming can check it runs the same one; None for features made elsewhere
    extractor: Optional[str] = None
    extractor_weights_sha256: Optional[str] = None


@dataclass
class TCAConfig:
    """Fused temporal-channel attention (ASL eq. 1-3)."""

    # weight of the channel branch: f = (1 - theta) * f_temporal + theta * f_channel
    theta: float = 0.2
    # pyramid levels whose blocks use the channel branch (0 = the stride-1 stem blocks)
    levels: List[int] = field(default_factory=lambda: [0])
    # channel-attention logits are divided by sqrt(valid length) or sqrt(head dim)
    channel_scale: Literal["time", "head"] = "time"


@dataclass
class ModelConfig:
    backbone_type: str = "convTransformer"
    fpn_type: str = "identity"
    # (#embedding convs, #stem blocks, #branch blocks)
    backbone_arch: List[int] = field(default_factory=lambda: [2, 2, 5])
    scale_factor: int = 2
    regression_range: List[List[float]] = field(
        default_factory=lambda: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]
    )
    n_head: int = 4
    # local attention window per level; <= 1 means global attention
    n_mha_win_size: Union[int, List[int]] = -1
    embd_kernel_size: int = 3
    embd_dim: Union[int, List[int]] = 512
    embd_with_ln: bool = True
    fpn_dim: int = 512
    fpn_with_ln: bool = True
    fpn_start_level: int = 0
    head_dim: int = 512
    head_kernel_size: int = 3
    head_num_layers: int = 3
    head_with_ln: bool = True
    max_buffer_len_factor: float = 6.0
    use_abs_pe: bool = False
    use_rel_pe: bool = False
    tca: TCAConfig = field(default_factory=TCAConfig)


@dataclass
class SensitivityConfig:
    """ASL's training-only parts (DESIGN §2.3-2.4). All three off is ActionFormer's training."""

    # learnable per-class Gaussians over the position inside the action weight the focal and DIoU losses
    class_level: bool = True
    # instance-level evaluator head on detached features, its MSE loss and its share of the weights
    instance_level: bool = True
    # action sensitive contrastive loss (ASCL) on the level-0 features
    contrastive: bool = True
    # lambda_s: weight of the instance-level MSE loss
    mse_weight: float = 1.0
    # lambda_c: weight of ASCL
    contrastive_weight: float = 0.1
    # tau: InfoNCE temperature of ASCL
    temperature: float = 0.07
    # delta: background context on each side of an action, as a fraction of its length
    background_ratio: float = 0.2


@dataclass
class TrainConfig:
    center_sample: Literal["radius", "none"] = "radius"
    center_sample_radius: float = 1.5
    loss_weight: float = 1.0
    cls_prior_prob: float = 0.01
    init_loss_norm: float = 2000
    clip_grad_l2norm: float = -1
    head_empty_cls: List[int] = field(default_factory=list)
    dropout: float = 0.0
    droppath: float = 0.1
    label_smoothing: float = 0.0
    # momentum of the running mean of positive points that normalises the losses
    loss_norm_momentum: float = 0.9
    # decay of the exponential moving average of the weights (the EMA weights are evaluated and exported)
    ema_decay: float = 0.999
    # mixed precision (float16 autocast + gradient scaling); used on CUDA only
    amp: bool = False
    # evaluate the EMA weights on val_split every this many epochs (0: only after the last epoch)
    eval_interval: int = 5
    # write a training-log line every this many iterations
    log_interval: int = 10
    asl: SensitivityConfig = field(default_factory=SensitivityConfig)


@dataclass
class TestConfig:
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 5000
    iou_threshold: float = 0.1
    min_score: float = 0.01
    max_seg_num: int = 1000
    nms_method: Literal["soft", "hard", "none"] = "soft"
    nms_sigma: float = 0.5
    duration_thresh: float = 0.05
    multiclass_nms: bool = True
    ext_score_file: Optional[str] = None
    voting_thresh: float = 0.75
    # tIoU thresholds of the detection mAP (THUMOS14's; ActivityNet uses 0.5:0.95:0.05)
    tiou_thresholds: List[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])


@dataclass
class OptConfig:
    type: Literal["AdamW", "SGD"] = "AdamW"
    momentum: float = 0.9
    weight_decay: float = 0.0
    learning_rate: float = 1e-3
    epochs: int = 30
    warmup: bool = True
    warmup_epochs: int = 5
    schedule_type: Literal["cosine", "multistep"] = "cosine"
    schedule_steps: List[int] = field(default_factory=list)
    schedule_gamma: float = 0.1


@dataclass
class LoaderConfig:
    batch_size: int = 8
    num_workers: int = 4


@dataclass
class Config:
    init_rand_seed: int = 1234567891
    dataset_name: str = "epic"
    devices: List[str] = field(default_factory=lambda: ["cuda:0"])
    train_split: List[str] = field(default_factory=lambda: ["training"])
    val_split: List[str] = field(default_factory=lambda: ["validation"])
    model_name: str = "LocPointTransformer"
    output_folder: Optional[str] = None
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train_cfg: TrainConfig = field(default_factory=TrainConfig)
    test_cfg: TestConfig = field(default_factory=TestConfig)
    opt: OptConfig = field(default_factory=OptConfig)
