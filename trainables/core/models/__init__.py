"""Model zoo. Importing this package registers every model."""
from trainables.core.models import (  # noqa: F401  (imported for their registrations)
    cnn,  # registers "cnn"
    finetune,  # registers "finetune"
    mnist_modes,  # registers "mnist_mode"
    pairs,  # registers the seed-000 pairs
)
from trainables.core.models.registry import (  # noqa: F401
    ModelEntry,
    ModelParams,
    Preprocess,
    build_model,
    get_model,
    model_names,
    register_model,
)
