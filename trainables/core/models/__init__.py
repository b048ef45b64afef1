"""Model zoo. Importing this package registers every model (catalog.py) without importing torch."""
from trainables.core.models import catalog  # noqa: F401  (imported for its registrations)
from trainables.core.models.registry import (  # noqa: F401
    ModelEntry,
    ModelParams,
    Preprocess,
    build_model,
    get_model,
    model_names,
    register_model,
)
