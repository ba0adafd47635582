"""Storage: SQLAlchemy 2 models, the async engine, and Alembic migrations."""

from .db import Database, create_database, refused_rows
from .models import ApiToken, Base, Employee, InternalLine, Registration, Role, User

__all__ = [
    "ApiToken",
    "Base",
    "Database",
    "Employee",
    "InternalLine",
    "Registration",
    "Role",
    "User",
    "create_database",
    "refused_rows",
]
