from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **fields) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields) -> "User":
        fields.setdefault("role", User.Role.STAFF)
        return self._create(email, password, **fields)

    def create_owner(self, email: str, password: str | None = None, **fields) -> "User":
        return self._create(email, password, role=User.Role.OWNER, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields) -> "User":
        """A platform operator (public schema): the Django admin on the public host."""
        fields.update(is_staff=True, is_superuser=True, role=User.Role.OWNER)
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in to a dashboard.

    The table exists in every tenant schema (so a tenant's users are invisible to the
    others by construction) and in the public schema for platform operators.
    """

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        STAFF = "staff", "Staff"

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=120, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.STAFF)
    language = models.CharField(max_length=2, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May sign in to the platform admin.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email
