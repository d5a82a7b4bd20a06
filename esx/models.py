"""Every mapped table of esx, imported in one place so that Alembic sees the whole schema."""
from esx.audit import CallRecord  # noqa: F401
from persistence.db import Base
from persistence.entities import Entity, EntityVersion, MnoSmdp  # noqa: F401
from persistence.outbox import OutboxMessage  # noqa: F401
from smdp_core.models import ProfileBatch, ProfileType, StockProfile  # noqa: F401
from smdp_core.op_models import SmdpOperation  # noqa: F401
from smsr_core.models import AdditionalProperty, EisAuditRecord, Euicc, ProfileRow, SecurityDomainRow  # noqa: F401
from smsr_core.ops_models import EuiccOta, Operation, SmsInbox  # noqa: F401

metadata = Base.metadata
