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
    """Whether defining ``cls`` registers it: it sets ``key`` in its own body (a
    subclass inheriting its parent's key is not a new method) and it lives in a module
    of the ``tf_st.methods`` package."""
    module = getattr(cls, "__module__", "") or ""
    return "key" in cls.__dict__ and cls.__dict__["key"] is not None and (
        module == PACKAGE or module.startswith(PACKAGE + "."))


def register(cls):
    """Adds ``cls`` under ``cls.key``; returns ``cls`` (usable as a decorator).

    A key already held by another class raises ``ValueError``; the same class, or a
    class of the same module and name (a reloaded module), replaces the entry."""
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
    """Removes ``key`` from the registry and returns its class (``KeyError`` if absent)."""
    return METHODS.pop(key)


def get(key):
    """The class registered under ``key``; ``ValueError`` naming the known keys if none."""
    try:
        return METHODS[key]
    except KeyError:
        raise ValueError(f"unknown method {key!r}; choose one of {sorted(METHODS)}") from None
