"""``zswap lsmod``, ``modinfo``, ``params`` and ``stats``: what /proc and /sys would show."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._common import (
    SEED,
    CliError,
    build_source,
    check_option_names,
    echo_json,
    log_warnings,
    make_zswap,
    name_value,
    section,
    source_options,
    source_pages,
    table,
)

if TYPE_CHECKING:
    from zswap_core import Zswap

__all__ = ["lsmod", "modinfo", "params", "stats"]

_CMDLINE_HELP = 'Boot parameters, e.g. "zswap.compressor=zstd zswap.zpool=z3fold zstd.level=5".'


@click.command(
    "lsmod",
    epilog="""
\b
Examples:
  zswap lsmod
  zswap lsmod --load           # import each plugin: does it load?
  zswap lsmod --json
""",
)
@click.option(
    "--load",
    is_flag=True,
    help="Import each available plugin first (as modinfo does), so that State says "
    "whether it loads.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def lsmod(load: bool, as_json: bool) -> None:
    """List installed compressor and allocator plugins (imports none of them).

    State is what this process knows: loaded; available (installed, not imported
    yet, so not known to load); failed (its import or its options failed); blocked;
    duplicate (two distributions provide it); refused (a name that can never load).
    Note says why, in one line. "Used by" counts the pools of this process that use
    the plugin (0 in a fresh process). Backend says what runs the per-page calls: the
    built-in module's is native (C) or python; an allocator is native when it gives
    the core its C ops table, which shows once it is loaded ("?" before); a compressor
    is called through its Python methods.
    """
    from zswap_core import default_registry, list_plugins

    rows = list_plugins()
    if load:
        reg = default_registry()
        for p in rows:
            if p.state == "available":
                reg.request(p.kind, p.name)  # a failure is recorded with its reason
        rows = list_plugins()
    core, why = _core_backend()
    if as_json:
        echo_json(
            [
                {
                    "name": "zswap",
                    "kind": "built-in",
                    "state": "loaded",
                    "backend": core,
                    "error": why,
                }
            ]
            + [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "distribution": p.distribution,
                    "version": p.version,
                    "target": p.target,
                    "state": p.state,
                    "used_by": p.use_count,
                    "backend": _plugin_backend(p.kind, p.name, p.state),
                    "alias_of": _alias_of(p.kind, p.name, p.state) or None,
                    "error": p.error,
                }
                for p in rows
            ]
        )
        return
    if not rows:
        click.echo(f"zswap (built-in): {core} backend" + (f" ({why})" if why else ""))
        click.echo("no plugins installed (pip install zswap-lz4 zswap-zsmalloc)")
        return
    table(
        ["Module", "Kind", "Distribution", "Version", "State", "Used by", "Backend", "Note"],
        [["zswap", "built-in", "zswap-core", _core_version(), "loaded", "-", core, why or ""]]
        + [
            [
                p.name,
                p.kind,
                p.distribution or "?",
                p.version or "?",
                p.state,
                p.use_count,
                _plugin_backend(p.kind, p.name, p.state),
                _note(p),
            ]
            for p in rows
        ],
    )


def _core_backend() -> tuple[str, str | None]:
    """The backend a new Zswap of this process gets, and why not native."""
    from zswap_core._backend import NATIVE_ERROR, choose

    try:
        backend = choose()
    except ValueError as exc:  # a bad ZSWAP_BACKEND: say so, as Zswap() would
        return "?", str(exc)
    if backend == "python":
        return "python", NATIVE_ERROR or "ZSWAP_BACKEND=python"
    return "native", None


def _core_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("zswap-core")
    except metadata.PackageNotFoundError:
        return "?"


def _alias_of(kind: str, name: str, state: str) -> str:
    """The compressor a loaded one is an alias of ("" when none, or not loaded)."""
    if kind != "compressor" or state != "loaded":
        return ""
    from zswap_core import default_registry

    mod = default_registry().loaded("compressor", name)
    return str(getattr(mod.driver, "alias_of", "") or "") if mod is not None else ""


def _note(p: Any) -> str:
    if p.error is not None:
        return str(p.error)
    alias = _alias_of(p.kind, p.name, p.state)
    if alias:
        return f"alias of {alias}: the same streams"
    return _NOTES.get(p.state, "")


def _plugin_backend(kind: str, name: str, state: str) -> str:
    """``native`` (C ops table), ``python``, or ``?`` (a plugin not loaded yet)."""
    if state != "loaded":
        return "?"
    from zswap_core import PageAllocator, default_registry

    if kind == "compressor":
        if _core_backend()[0] == "python":
            return "python"  # the Python core calls every codec through its methods
        cmod = default_registry().loaded("compressor", name)
        if cmod is None:
            return "?"
        try:  # a scratch instance: whether it offers its codec ops (zswap_ops.h)
            comp = cmod.driver(cmod.params)
        except Exception:
            return "?"
        try:
            return "native" if getattr(comp, "codec_ops", None) is not None else "python"
        finally:
            comp.close()
    mod = default_registry().loaded("zpool", name)
    if mod is None:
        return "?"
    try:  # a scratch pool: whether an instance offers its ops table (zswap_ops.h)
        pool = mod.driver(f"{name}-probe", PageAllocator(), mod.params)
    except Exception:
        return "?"
    try:
        return "native" if getattr(pool, "zpool_ops", None) is not None else "python"
    finally:
        pool.destroy()


#: What lsmod notes for a state without an error of its own.
_NOTES = {"available": "not imported yet"}


@click.command(
    "modinfo",
    epilog="""
\b
Examples:
  zswap modinfo zstd
  zswap modinfo zsmalloc
  zswap modinfo zswap          # the built-in module's parameters
""",
)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON.")
def modinfo(name: str, as_json: bool) -> None:
    """Show a plugin: distribution, version, API version, description and parameters.

    The plugin is loaded (imported) to read its parameters, as modinfo reads a .ko.
    """
    from zswap_core import API_VERSION, PluginError, Zswap, default_registry, list_plugins

    infos: list[dict[str, Any]] = []
    if name == "zswap":
        core, why = _core_backend()
        with Zswap(ram_bytes=1 << 30) as z:
            infos.append(
                {
                    "name": "zswap",
                    "kind": "built-in",
                    "description": "compressed cache in front of swap (zswap_core)",
                    "backend": core + (f" ({why})" if why else " (C extension zswap_core._core)"),
                    "parameters": _param_rows(z.params),
                }
            )
    reg = default_registry()
    for p in list_plugins():
        if p.name != name:
            continue
        info: dict[str, Any] = {
            "name": p.name,
            "kind": p.kind,
            "distribution": p.distribution,
            "version": p.version,
            "entry_point": p.target,
        }
        if p.state in ("blocked", "duplicate", "refused"):
            # Never imported: lsmod's reason is the whole story (a require() here
            # would tell a refused name's problem without its distribution).
            info["state"] = p.state
            info["error"] = p.error
            infos.append(info)
            continue
        try:
            mod = reg.require(p.kind, p.name)
        except PluginError as exc:
            info["state"] = "failed"
            info["error"] = str(exc)
            infos.append(info)
            continue
        api = getattr(mod.driver, "api_version", None)
        info.update(
            {
                "api_version": api,
                "core_api_version": API_VERSION,
                "description": getattr(mod.driver, "description", "") or "",
                "state": "loaded",
                "used_by": mod.use_count,
                "backend": _plugin_backend(p.kind, p.name, "loaded"),
                **(
                    {"alias_of": f"{alias} (the same streams, byte for byte)"}
                    if (alias := str(getattr(mod.driver, "alias_of", "") or ""))
                    else {}
                ),
                "parameters": _param_rows(mod.params),
            }
        )
        infos.append(info)
    if not infos:
        raise CliError(f"module {name!r} not found (see `zswap lsmod`)")
    if as_json:
        echo_json(infos if len(infos) > 1 else infos[0])
        return
    for i, info in enumerate(infos):
        if i:
            click.echo()
        rows: list[tuple[str, object]] = [
            (f"{k}:", v if v is not None else "?")
            for k, v in info.items()
            if k not in ("parameters", "core_api_version")
        ]
        if "api_version" in info:
            rows = [
                (k, f"{info['api_version']} (core API {info['core_api_version']})")
                if k == "api_version:"
                else (k, v)
                for k, v in rows
            ]
        for p in info.get("parameters", []):
            rows.append(("parm:", f"{p['name']}:{p['description']} ({p['type']}) = {p['value']}"))
        name_value(rows)


def _param_rows(mp: Any) -> list[dict[str, Any]]:
    out = []
    sysfs = mp.as_sysfs()
    for pname in mp:
        decl = mp.declaration(pname)
        out.append(
            {
                "name": pname,
                "type": decl.kind,
                "value": sysfs[pname],
                "default": decl.format(decl.default),
                "writable": decl.writable,
                "description": decl.description,
            }
        )
    return out


@click.command(
    "params",
    epilog="""
\b
Examples:
  zswap params
  zswap params --cmdline "zswap.compressor=zstd zswap.max_pool_percent=30 zstd.level=5"
""",
)
@click.option("--cmdline", default="", metavar="STRING", help=_CMDLINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print {module: {param: value}} as JSON.")
def params(cmdline: str, as_json: bool) -> None:
    """Show the parameters a boot configuration gives, in sysfs form.

    One /sys/module/MODULE/parameters/NAME: VALUE line each: the zswap module, then the
    compressor and allocator of the current pool and any other module named in --cmdline.
    A parameter that no kernel has (checksums_enabled, codec levels, zsmalloc's
    chain_size) is marked "(simulator only)"; `zswap host` shows the real kernel's.
    """
    z = make_zswap(cmdline, ram_bytes=1 << 30)
    try:
        with log_warnings() as logged:  # plugins loaded here may log ignored options
            out = _all_params(z, cmdline)
    finally:
        z.close()
    for message in logged:
        click.echo(f"zswap: warning: {message}", err=True)
    if as_json:
        echo_json(out)
        return
    for module, values in out.items():
        for pname, value in values.items():
            line = f"/sys/module/{module}/parameters/{pname}: {value}"
            click.echo(line + _simulator_only(module, pname))


def _all_params(z: Zswap, cmdline: str) -> dict[str, dict[str, str]]:
    from zswap_core import PluginError, default_registry, list_plugins, parse_cmdline

    out: dict[str, dict[str, str]] = {"zswap": z.params.as_sysfs()}
    reg = default_registry()
    wanted = [z.params["compressor"], z.params["zpool"], *parse_cmdline(cmdline)]
    kinds = {p.name: p.kind for p in list_plugins()}
    for module in dict.fromkeys(wanted):
        if module in out or module not in kinds:
            continue  # like the kernel, options for modules that do not exist are kept unused
        try:
            mod = reg.require(kinds[module], module)
        except PluginError as exc:  # e.g. its --cmdline option is refused: say so
            raise CliError(f"module {module!r}: {exc}") from None
        out[module] = mod.params.as_sysfs()
    # Loaded now, so an option a module does not declare is known to be a typo.
    check_option_names(parse_cmdline(cmdline))
    return out


@click.command(
    "stats",
    epilog="""
\b
Examples:
  zswap stats
  zswap stats --cmdline "zswap.compressor=zstd zswap.zpool=zsmalloc" --pages 20000
  zswap stats --all-classes
  zswap stats /usr/lib/python3*/ --pages 2000     # the pages of real files
  zswap stats --pid 1234                          # a live process's memory
""",
)
@click.argument("paths", nargs=-1, type=click.Path(), metavar="[PATH]...")
@source_options
@click.option("--cmdline", default="", metavar="STRING", help=_CMDLINE_HELP)
@click.option(
    "--pages",
    type=click.IntRange(1, 1 << 22),
    default=4096,
    show_default=True,
    help="Pages to store (at most: files and processes give what they have).",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of synthetic pages.")
@click.option("--all-classes", is_flag=True, help="Show empty zsmalloc size classes too.")
@click.option("--json", "as_json", is_flag=True, help="Print counters and pool stats as JSON.")
def stats(
    paths: tuple[str, ...],
    source: str | None,
    files: tuple[str, ...],
    pid: int | None,
    cmdline: str,
    pages: int,
    seed: int,
    all_classes: bool,
    as_json: bool,
) -> None:
    """Store a workload's pages and show the debugfs counters.

    The pages come from the same sources as `zswap run`: synthetic (default), files
    (PATH... or --file) or a live process (--pid). Prints /sys/kernel/debug/zswap/*
    like `grep -r . /sys/kernel/debug/zswap/`, and for an allocator with statistics
    (zsmalloc) its per-class table like /sys/kernel/debug/zsmalloc/POOL/classes.
    Whatever no kernel shows there is marked "(simulator only)".
    """
    src = build_source(source, files, paths, pid, seed, max_pages=pages)
    n = source_pages(src, pages)
    z = make_zswap(cmdline, ram_bytes=max(1 << 30, 8 * n * src.page_size))
    try:
        z.init(0)
        for off in range(n):
            z.store(0, off, src.page(off))
        counters = z.stats
        pools = _zpool_stats(z)
    finally:
        z.close()
    if as_json:
        echo_json({"source": src.describe(), "pages": n, "stats": counters, "pools": pools})
        return
    for k, v in counters.items():
        click.echo(f"/sys/kernel/debug/zswap/{k}:{v}" + _simulator_only("zswap", k))
    for p in pools:
        st = p["stats"]
        if not st:
            continue
        classes = st.get("classes") if isinstance(st, dict) else None
        mark = _simulator_only(p["zpool"], "debugfs")
        if isinstance(classes, list) and classes:
            # The classes table is the kernel's; what follows it is ours (marked).
            section(f"/sys/kernel/debug/{p['zpool']}/{p['name']}/classes")
            _print_classes(classes, st.get("total"), all_classes)
            rest = {k: v for k, v in st.items() if k not in ("classes", "total")}
        else:
            section(f"/sys/kernel/debug/{p['zpool']}/{p['name']}/" + mark)
            rest = st if isinstance(st, dict) else {"stats": st}
        if rest:
            if classes:
                click.echo()
                click.echo(f" {p['zpool']} figures of zswap_core" + mark)
            name_value(rest.items(), " ")


#: How a path that no kernel has is marked, after the value.
SIMULATOR_ONLY_MARK = "   (simulator only)"


def _simulator_only(module: str, name: str) -> str:
    """The mark for ``module``'s parameter or counter ``name`` if no kernel has it, else ""."""
    from zswap_core.kernels import simulator_only_note

    return SIMULATOR_ONLY_MARK if simulator_only_note(module, name) is not None else ""


def _zpool_stats(z: Zswap) -> list[dict[str, Any]]:
    """Per pool, the allocator's own statistics."""
    return z.zpool_stats()


def _print_classes(rows: list[dict[str, Any]], total: Any, all_classes: bool) -> None:
    headers = list(rows[0])
    shown = [r for r in rows if all_classes or r.get("obj_allocated", 1) or r.get("obj_used", 1)]
    body: list[list[object]] = [[r.get(h, "") for h in headers] for r in shown]
    if isinstance(total, dict):
        body.append(["Total", "", *[total.get(h, "") for h in headers[2:]]])
    table(headers, body, " ")
