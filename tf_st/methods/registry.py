"""The method registry: ``{key: class}``, filled by the classes themselves.

A concrete method class defined in a module of the ``tf_st.methods`` package registers
itself under the ``key`` it sets in its own body (``AdversarialMethod.__init_subclass__``
calls :func:`register`); ``tf_st.methods`` imports every public module of the package
(sorted by name), so adding a method is one new module under ``tf_st/methods/`` and
nothing else.  Classes defined elsewhere (tests, user code) are not registered by
defining them: pass them to :func:`register` (and :func:`unregister` them when done).

This module imports nothing of the package: it is the bottom of ``tf_st.methods``.
"""

PACKAGE = "tf_st.methods"

# key -> class.  ``tf_st.methods.METHODS`` is this dict (the same object).
METHODS = {}


def registers_itself(cls):
    """Whether defining ``cls`` registers it.

    It does if it sets ``key`` in its own body (a subclass inheriting its parent's key is not
    a new method) and lives in a module of the ``tf_st.methods`` package.

    Args:
      cls: a method class.

    Returns:
      A bool.
    """
    module = getattr(cls, "__module__", "") or ""
    return "key" in cls.__dict__ and cls.__dict__["key"] is not None and (
        module == PACKAGE or module.startswith(PACKAGE + "."))


def register(cls):
    """Adds ``cls`` under ``cls.key`` (usable as a decorator).

    The same class, or a class of the same module and name (a reloaded module), replaces the
    entry.

    Args:
      cls: a subclass of ``AdversarialMethod`` with a non-empty string ``key``.

    Returns:
      ``cls``.

    Raises:
      ValueError: ``cls`` sets no key, or the key is held by another class.
    """
    key = cls.__dict__.get("key", getattr(cls, "key", None))
    if not isinstance(key, str) or not key:
        raise ValueError(f"{cls.__qualname__} sets no method key (a non-empty string)")
    old = METHODS.get(key)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (
            cls.__module__, cls.__qualname__):
        raise ValueError(f"method key {key!r} of {cls.__module__}.{cls.__qualname__} is "
                         f"already taken by {old.__module__}.{old.__qualname__}")
    METHODS[key] = cls
    return cls


def unregister(key):
    """Removes ``key`` from the registry.

    Args:
      key: a method key.

    Returns:
      The class it held.

    Raises:
      KeyError: ``key`` is not registered.
    """
    return METHODS.pop(key)


def get(key):
    """The class registered under ``key``.

    Args:
      key: a method key (``"st"``, ``"trades"``, ...).

    Returns:
      The ``AdversarialMethod`` subclass.

    Raises:
      ValueError: unknown ``key`` (the message names the known keys).
    """
    try:
        return METHODS[key]
    except KeyError:
        raise ValueError(f"unknown method {key!r}; choose one of {sorted(METHODS)}") from None
