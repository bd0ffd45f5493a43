"""Import every domain's tables so that ``db.metadata`` knows the whole schema."""

from __future__ import annotations


def load_all() -> None:
    from .agents import models as _agents  # noqa: F401
    from .ledger import models as _ledger  # noqa: F401
    from .oauth import models as _oauth  # noqa: F401
    from .organizations import models as _organizations  # noqa: F401
    from .reports import models as _reports  # noqa: F401
    from .usage import models as _usage  # noqa: F401
    from .users import models as _users  # noqa: F401
    from .webhooks import models as _webhooks  # noqa: F401
