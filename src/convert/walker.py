"""Describe a PasteDeploy stack as PasteDeploy itself resolves it, without building it.

`wsgi-gateway convert` runs this module in its embedded interpreter. It asks
`paste.deploy.loadwsgi.loadcontext` for the loader context of one app, exactly as
`loadapp` would (sections `app:`, `filter:`, `pipeline:`, `composite:`, `filter-app:`,
`filter-with`, `[DEFAULT]`, `set`/`get`, `%(here)s` and `%(var)s` interpolation,
`use = egg:...`, `use = config:other.ini#name`, `use = call:module:function`, explicit
`paste.app_factory = ...` keys), then walks the context tree and returns plain data
(JSON) that the Rust side maps to gateway.toml. No factory is ever called.

While walking, the loader's three ways of turning a name into a Python object (an
entry point's `load()`, `call:`'s `lookup_object` and the explicit form's
`EntryPoint(...).load()`) are replaced by `Reference`, which records `module:attr`
without importing anything: converting a stack runs none of its code. Everything else
(which section, which entry point, which protocol, what goes into `local_conf` and
`global_conf`) is PasteDeploy's own code.

Paste's `URLMap` is used as it is to parse and order a urlmap's mounts, so routes come
out in the order URLMap tries them.
"""

import ast
import configparser
import json
import os

from paste.deploy import loadwsgi

URLMAP_FACTORY = "paste.urlmap:urlmap_factory"


class Reference:
    """Stands for the object an entry point or `call:` names, without importing it."""

    def __init__(self, module, attr):
        self.module = module.strip()
        self.attr = attr.strip()

    @property
    def spec(self):
        return f"{self.module}:{self.attr}"


class _EntryPointReference:
    """An installed entry point whose `load()` gives a Reference."""

    def __init__(self, entry):
        self.name = entry.name
        self.group = entry.group
        self._entry = entry

    def load(self):
        return Reference(self._entry.module, self._entry.attr)


class _ExplicitEntryPoint:
    """`importlib.metadata.EntryPoint(name, group, value)` whose `load()` gives a
    Reference (the `paste.app_factory = module:attr` form of a section)."""

    def __init__(self, name=None, group=None, value=""):
        module, _, attr = value.partition(":")
        self._reference = Reference(module, attr.split("[")[0])

    def load(self):
        return self._reference


class _Metadata:
    """What loadwsgi uses of importlib.metadata, with entry points not loaded."""

    def __init__(self, original):
        self.distribution = original.distribution
        self.EntryPoint = _ExplicitEntryPoint


class _Patched:
    """Swap the loader's object lookups for References, and record for every context
    the sections it was read from, for as long as the walk runs."""

    def __enter__(self):
        self._saved = {}
        original_find = loadwsgi.find_entry_point

        def find_entry_point(dist, group, name):
            entry = original_find(dist, group, name)
            return None if entry is None else _EntryPointReference(entry)

        def lookup_object(spec):
            module, _, attr = spec.partition(":")
            return Reference(module, attr)

        self._replace(loadwsgi, "find_entry_point", find_entry_point)
        self._replace(loadwsgi, "lookup_object", lookup_object)
        if hasattr(loadwsgi, "importlib_metadata"):
            self._replace(loadwsgi, "importlib_metadata", _Metadata(loadwsgi.importlib_metadata))
        original_get_context = loadwsgi.ConfigLoader.get_context

        def get_context(loader, object_type, name=None, global_conf=None):
            context = original_get_context(loader, object_type, name, global_conf)
            if not loader.absolute_name(name):
                section = loader.find_config_section(object_type, name=name)
                origin = {
                    "file": os.path.abspath(loader.filename),
                    "section": section,
                    "name": name or "main",
                    "use": _raw_option(loader.parser, section, "use"),
                }
                # The outermost lookup comes last and goes first: a `use = other`
                # chain reads [app:main] -> [app:other].
                context.gw_origin = [origin] + getattr(context, "gw_origin", [])
            return context

        self._replace(loadwsgi.ConfigLoader, "get_context", get_context)
        return self

    def _replace(self, owner, attr, value):
        self._saved[(owner, attr)] = getattr(owner, attr)
        setattr(owner, attr, value)

    def __exit__(self, *exc):
        for (owner, attr), value in self._saved.items():
            setattr(owner, attr, value)
        return False


def _raw_option(parser, section, option):
    try:
        return parser.get(section, option, raw=True)
    except (configparser.NoOptionError, configparser.NoSectionError):
        return None


def _spec_of(obj):
    """`module:attr` of a Reference, or of a real object when the loader could not be
    patched (an old PasteDeploy)."""
    if isinstance(obj, Reference):
        return obj.spec
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "?"
    return f"{module}:{name}"


def _strings(mapping):
    return {str(k): str(v) for k, v in (mapping or {}).items()}


def _describe(context, inherited_origin):
    own_origin = getattr(context, "gw_origin", None)
    origin = own_origin or inherited_origin
    kind = context.object_type
    # own_origin: `file#name` of origin[0] loads exactly this node (not a filter-with
    # wrapped around it, not the filter-app section it is the filter of).
    node = {
        "origin": origin,
        "own_origin": bool(own_origin),
        "standalone": _standalone_differences(context, origin) if own_origin else [],
    }
    if kind is loadwsgi.PIPELINE:
        node["type"] = "pipeline"
        node["filters"] = [_describe(c, origin) for c in context.filter_contexts]
        node["app"] = _describe(context.app_context, origin)
    elif kind is loadwsgi.FILTER_APP:
        node["type"] = "filter_app"
        node["filter"] = _describe(context.filter_context, origin)
        node["next"] = _describe(context.next_context, origin)
    elif kind is loadwsgi.FILTER_WITH:
        node["type"] = "filtered_with"
        node["filter"] = _describe(context.filter_context, origin)
        node["next"] = _describe(context.next_context, origin)
    else:
        node["type"] = "filter" if kind is loadwsgi.FILTER else "app"
        node["protocol"] = context.protocol
        node["factory"] = _spec_of(context.object)
        distribution = getattr(context, "distribution", None)
        node["distribution"] = distribution.metadata["Name"] if distribution else None
        node["entry_point"] = getattr(context, "entry_point_name", None)
        node["local_conf"] = _strings(context.local_conf)
        node["global_conf"] = _strings(context.global_conf)
        if node["type"] == "app" and node["factory"] == URLMAP_FACTORY:
            node["urlmap"] = _describe_urlmap(context, origin)
    return node


def _standalone_differences(context, origin):
    """The global_conf keys that differ when `file#name` is loaded alone (as
    `paste = "file#name"` does) rather than reached from the file being converted."""
    if not origin:
        return []
    first = origin[0]
    kind = loadwsgi.FILTER if first["section"].startswith("filter:") else loadwsgi.APP
    try:
        alone = loadwsgi.loadcontext(kind, "config:" + first["file"], name=first["name"])
    except Exception:  # noqa: BLE001 - reported, not fatal: the caller names the keys
        return ["(it does not load alone)"]
    ours, theirs = _strings(context.global_conf), _strings(alone.global_conf)
    return sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))


def _describe_urlmap(context, origin):
    from paste import urlmap as paste_urlmap

    local = dict(context.local_conf)
    not_found = local.pop("not_found_app", None) or context.global_conf.get("not_found_app")
    mapper = paste_urlmap.URLMap()
    for key, app_name in local.items():
        # Paste's own parsing and ordering; the value is only a marker.
        mapper[paste_urlmap.parse_path_expression(key)] = _Mount(key, app_name)
    mounts = []
    for (domain, path), mount in mapper.applications:
        target = context.loader.get_context(
            loadwsgi.APP, name=mount.app_name, global_conf=context.global_conf
        )
        mounts.append({
            "key": mount.key,
            "domain": domain,
            "path": path,
            "app": _describe(target, origin),
        })
    described = {"mounts": mounts, "not_found": None}
    if not_found:
        target = context.loader.get_context(
            loadwsgi.APP, name=not_found, global_conf=context.global_conf
        )
        described["not_found"] = _describe(target, origin)
    return described


class _Mount:
    def __init__(self, key, app_name):
        self.key = key
        self.app_name = app_name


def _describe_server(path, name):
    """The `[server:NAME]` section's options, interpolated as PasteDeploy reads them
    (the server's own egg need not be installed)."""
    loader = loadwsgi.ConfigLoader(path)
    try:
        section = loader.find_config_section(loadwsgi.SERVER, name=name)
    except LookupError:
        return None
    defaults = loader.parser.defaults()
    options = {
        option: loader.parser.get(section, option)
        for option in loader.parser.options(section)
        if option not in defaults
    }
    return {"section": section, "options": options}


def _describe_logging(path):
    """Where each logger of the `[loggers]` sections writes, as `logging.config.fileConfig`
    would set it up: `stdout`, `stderr`, `file:PATH` or `other:CLASS`."""
    here = os.path.dirname(os.path.abspath(path))
    parser = configparser.ConfigParser(defaults={"here": here, "__file__": os.path.abspath(path)})
    parser.read(path)
    if not parser.has_section("loggers"):
        return None

    def keys(section):
        return [k.strip() for k in parser.get(section, "keys", fallback="").split(",") if k.strip()]

    handlers = {}
    for key in keys("handlers"):
        section = "handler_" + key
        if parser.has_section(section):
            handlers[key] = _handler_output(
                parser.get(section, "class", fallback=""),
                parser.get(section, "args", fallback="()"),
                here,
            )
    loggers = {}
    for key in keys("loggers"):
        section = "logger_" + key
        if not parser.has_section(section):
            continue
        qualname = "root" if key == "root" else parser.get(section, "qualname", fallback=key)
        loggers[qualname] = {
            "outputs": [
                handlers.get(h.strip(), "other:" + h.strip())
                for h in parser.get(section, "handlers", fallback="").split(",")
                if h.strip()
            ],
            "propagate": parser.get(section, "propagate", fallback="1").strip() != "0",
            "level": parser.get(section, "level", fallback="NOTSET").strip(),
        }
    return {"loggers": loggers}


def _handler_output(cls, args, here):
    cls = cls.strip()
    short = cls.rsplit(".", 1)[-1]
    if short == "StreamHandler":
        if "sys.stdout" in args:
            return "stdout"
        return "stderr"
    if short in ("FileHandler", "WatchedFileHandler", "RotatingFileHandler",
                 "TimedRotatingFileHandler"):
        try:
            first = ast.literal_eval(args)
            first = first[0] if isinstance(first, tuple) else first
            return "file:" + os.path.join(here, str(first))
        except (ValueError, SyntaxError, IndexError):
            return "other:" + cls
    return "other:" + cls


def describe(path, name):
    """The JSON description of `path#name` (see the Rust side, `convert::walk`)."""
    path = os.path.abspath(path)
    with _Patched():
        context = loadwsgi.loadcontext(loadwsgi.APP, "config:" + path, name=name)
        root = _describe(context, [])
    return json.dumps({
        "file": path,
        "name": name,
        "root": root,
        "server": _describe_server(path, "main"),
        "logging": _describe_logging(path),
    })
