"""codebind_hf: CodeBind (decoupled multimodal alignment with a shared compositional VQ codebook) for Hugging Face."""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoProcessor,
    AutoTokenizer,
)

from .adapters.bond_io import add_bond, apply_bonds, list_bonds, load_bond, push_bond, read_bond, remove_bond, save_bond
from .adapters.bonds import ProjectorMixture, SpaceBond, SpaceBondConfig, mine_pseudo_pairs, train_bond
from .adapters.paths import list_paths, load_path, push_path, remove_path, save_path
from .adapters.projector import (
    ProjectorHead,
    attach_projector,
    list_projectors,
    load_projector,
    push_projector,
    remove_projector,
    save_projector,
)
from .configuration_codebind import (
    CodeBindConfig,
    CodeBindDecoderConfig,
    DecoderConfig,
    CodeBindTowerConfig,
    PathConfig,
    QuantizerConfig,
    paper_loss_weights,
)
from .feature_extraction_array_sensor import CodeBindArraySensorFeatureExtractor
from .feature_extraction_codebind import CodeBindFeatureExtractor
from .image_processing_codebind import CodeBindImageProcessor
from .losses import (
    AdaptiveLossBalancer,
    codevector_contrastive,
    codevector_uniformity,
    cross_modal_code_matching,
    info_nce,
    orthogonality,
    reconstruction,
    uniformity,
)
from .modalities import INPUT_KEYS, MODALITIES, canonical_modality
from .modeling_codebind import CodeBindModel, CodeBindOutput, CodeBindPreTrainedModel
from .processing_codebind import CodeBindProcessor
from .quantization import CompositionalQuantizer, MultiCodebookQuantizer, QuantizerOutput
from .tokenization_codebind import CodeBindTokenizer
from .version import __version__

AutoConfig.register("codebind", CodeBindConfig, exist_ok=True)
AutoModel.register(CodeBindConfig, CodeBindModel, exist_ok=True)
AutoProcessor.register(CodeBindConfig, CodeBindProcessor, exist_ok=True)
# So that the components a saved CodeBindProcessor writes load through their own Auto classes too.
AutoConfig.register(CodeBindDecoderConfig.model_type, CodeBindDecoderConfig, exist_ok=True)
AutoConfig.register(CodeBindTowerConfig.model_type, CodeBindTowerConfig, exist_ok=True)
AutoTokenizer.register(CodeBindConfig, slow_tokenizer_class=CodeBindTokenizer, exist_ok=True)
AutoFeatureExtractor.register(CodeBindConfig, CodeBindFeatureExtractor, exist_ok=True)
# A new sensor's processor component (it has no model config of its own; the tower view is the nearest).
AutoFeatureExtractor.register(CodeBindTowerConfig, CodeBindArraySensorFeatureExtractor, exist_ok=True)
# One class for both backend names: it is neither transformers' PIL nor its torchvision pipeline (PIL resizing for
# images, torch for videos and maps), and registering one name only makes AutoImageProcessor warn about the other.
AutoImageProcessor.register(
    CodeBindConfig,
    image_processor_classes={"pil": CodeBindImageProcessor, "torchvision": CodeBindImageProcessor},
    exist_ok=True,
)

__all__ = [
    "__version__",
    "CodeBindConfig",
    "QuantizerConfig",
    "DecoderConfig",
    "CodeBindDecoderConfig",
    "CodeBindTowerConfig",
    "CodeBindImageProcessor",
    "CodeBindFeatureExtractor",
    "CodeBindArraySensorFeatureExtractor",
    "PathConfig",
    "paper_loss_weights",
    "CodeBindModel",
    "CodeBindOutput",
    "CodeBindPreTrainedModel",
    "CodeBindProcessor",
    "CodeBindTokenizer",
    "CompositionalQuantizer",
    "MultiCodebookQuantizer",
    "QuantizerOutput",
    "AdaptiveLossBalancer",
    "info_nce",
    "cross_modal_code_matching",
    "orthogonality",
    "uniformity",
    "codevector_contrastive",
    "codevector_uniformity",
    "reconstruction",
    "MODALITIES",
    "INPUT_KEYS",
    "canonical_modality",
    "SpaceBondConfig",
    "SpaceBond",
    "ProjectorMixture",
    "train_bond",
    "mine_pseudo_pairs",
    "add_bond",
    "remove_bond",
    "list_bonds",
    "apply_bonds",
    "save_bond",
    "load_bond",
    "push_bond",
    "read_bond",
    "save_path",
    "load_path",
    "push_path",
    "remove_path",
    "list_paths",
    "ProjectorHead",
    "attach_projector",
    "save_projector",
    "load_projector",
    "push_projector",
    "remove_projector",
    "list_projectors",
]
