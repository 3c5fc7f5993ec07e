"""`ipva inspect PACKAGE`: validate a package offline and print its layout.

Accepts what `ipva build` writes: an OVA, the OVF zip, the Hyper-V zip, and the vmware/,
proxmox/ and libvirt/ directories. Checks structure, manifest, schema and disk formats, and
shows what each importer will make of the package (tools.import_views), warning where a disk
would be lost or the guest would find no driver.
"""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from firmware.run import ToolError, run
from images import convert, vhdx, vmdk
from images.archive import extract_plain_files, file_digest
from tools import import_views

OVF_NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vmw": "http://www.vmware.com/schema/ovf",
}
MANIFEST_RE = re.compile(r"^(SHA256|SHA1)\(([^()\s]+)\)= ([0-9a-f]+)$")
DISK_FORMATS = {".vmdk": "vmdk", ".qcow2": "qcow2", ".vhdx": "vhdx"}


def find_ovf_schema() -> Path | None:
    """The DSP8023 schema: $IPVA_OVF_SCHEMA, else the checkout's ../shared/schemas copy."""
    env = os.environ.get("IPVA_OVF_SCHEMA")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[1]
    candidates.append(repo.parent / "shared" / "schemas" / "ovf" / "dsp8023_1.1.1.xsd")
    return next((p for p in candidates if p.is_file()), None)


@dataclass
class Report:
    checks: list[tuple[bool, str]] = field(default_factory=list)
    layout: list[str] = field(default_factory=list)
    views: list[import_views.View] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # disk file name → virtual size

    def check(self, ok: bool, what: str) -> bool:
        self.checks.append((ok, what))
        return ok

    @property
    def warnings(self) -> list[str]:
        return [w for v in self.views for w in v.warnings]

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.checks)


def _check_tool(report: Report, what: str, argv: list[str | Path]) -> None:
    try:
        run(argv)
        report.check(True, what)
    except ToolError as exc:
        report.check(False, f"{what}: {exc}")


def inspect_disk(report: Report, path: Path, label: str | None = None) -> None:
    label = label or path.name
    fmt = DISK_FORMATS[path.suffix]
    try:
        info = convert.image_info(path)
    except ToolError as exc:
        report.check(False, f"{label}: qemu-img info: {exc}")
        return
    if not report.check(info.get("format") == fmt, f"{label}: format {info.get('format')}"):
        return
    size = info["virtual-size"]
    report.sizes[path.name] = size
    extra = ""
    if fmt == "vmdk":
        create_type = vmdk.read_descriptor(path).get("createType", "?")
        extra = f", {create_type}"
        if create_type == "streamOptimized":
            _inspect_stream_vmdk(report, path, label)
    elif fmt == "vhdx":
        try:
            with path.open("rb") as fh:
                vhdx.read_headers(fh)
            report.check(True, f"{label}: VHDX headers and checksums")
        except vhdx.VhdxError as exc:
            report.check(False, f"{label}: {exc}")
        block = info.get("cluster-size")
        report.check(block == 1 << 20, f"{label}: block size {block} (want 1 MiB)")
    report.check(size % (1 << 20) == 0, f"{label}: virtual size {size} is whole MiB")
    _check_tool(report, f"{label}: qemu-img check", ["qemu-img", "check", "-q", "-f", fmt, path])
    report.layout.append(
        f"  {label:<16} {fmt}{extra}, {size / (1 << 20):.0f} MiB virtual, "
        f"{path.stat().st_size} bytes"
    )


def _inspect_stream_vmdk(report: Report, path: Path, label: str) -> None:
    try:
        with path.open("rb") as fh:
            reader = vmdk.StreamOptimizedReader(fh)
            hdr = reader.header
            entries = list(vmdk.walk_stream(fh, hdr["overhead"]))
        kinds = [e.kind for e in entries]
        report.check(
            hdr["version"] == 3 and hdr["flags"] == vmdk.STREAM_FLAGS,
            f"{label}: header version {hdr['version']}, flags {hdr['flags']:#x}",
        )
        report.check(kinds[-3:] == ["GD", "FOOTER", "EOS"], f"{label}: stream ends GD, FOOTER, EOS")
        adapter = reader.descriptor.get("ddb.adapterType")
        report.check(adapter == "ide", f"{label}: ddb.adapterType {adapter}")
    except (vmdk.VmdkError, ValueError) as exc:
        report.check(False, f"{label}: {exc}")


def _validate_ovf(report: Report, ovf_bytes: bytes, name: str):
    from lxml import etree

    try:
        doc = etree.fromstring(ovf_bytes)
    except etree.XMLSyntaxError as exc:
        report.check(False, f"{name}: not XML: {exc}")
        return None
    schema_path = find_ovf_schema()
    if schema_path is None:
        report.check(True, f"{name}: schema not found, XSD check skipped (set IPVA_OVF_SCHEMA)")
    else:
        schema = etree.XMLSchema(etree.parse(str(schema_path)))
        ok = schema.validate(doc)
        err = "" if ok else f": {schema.error_log.last_error}"
        report.check(ok, f"{name}: valid against {schema_path.name}{err}")
    return doc


def _ovf_hrefs(doc) -> list[str]:
    """The References hrefs in order (the hardware is shown by the import views)."""
    return [
        f.get(f"{{{OVF_NS['ovf']}}}href") for f in doc.findall("ovf:References/ovf:File", OVF_NS)
    ]


def inspect_ova(report: Report, path: Path) -> None:
    report.layout.append(f"{path.name}: OVA")
    with tarfile.open(path) as tar, tempfile.TemporaryDirectory() as tmp:
        members = tar.getmembers()
        names = [m.name for m in members]
        with path.open("rb") as fh:
            head = fh.read(512)
        report.check(head[257:265] == b"ustar\x0000", "tar is USTAR")
        report.check(
            all(m.isfile() and "/" not in m.name for m in members),
            "members are plain files at top level",
        )
        if not report.check(
            len(names) >= 2 and names[0].endswith(".ovf") and names[1].endswith(".mf"),
            f"member order starts .ovf, .mf: {names[:2]}",
        ):
            return
        extract_plain_files(tar, Path(tmp))
        ovf_path = Path(tmp, names[0])
        doc = _validate_ovf(report, ovf_path.read_bytes(), names[0])
        if doc is None:
            return
        hrefs = _ovf_hrefs(doc)
        report.check(names[2:] == hrefs, f"disks follow in References order: {names[2:]}")
        first = (Path(tmp) / names[1]).read_text().partition("(")[0]
        ovf_bytes = ovf_path.read_bytes()
        report.views += [
            import_views.vmware_view(ovf_bytes, first),
            import_views.proxmox_view(ovf_bytes),
        ]
        sizes = {
            f.get(f"{{{OVF_NS['ovf']}}}href"): int(f.get(f"{{{OVF_NS['ovf']}}}size", "-1"))
            for f in doc.findall("ovf:References/ovf:File", OVF_NS)
        }
        for name in hrefs:
            if name in names:
                actual = Path(tmp, name).stat().st_size
                report.check(sizes[name] == actual, f"{name}: ovf:size {sizes[name]} = {actual}")
        _check_manifest(report, Path(tmp), names[1], [names[0], *names[2:]])
        report.layout.append("disks:")
        for name in names[2:]:
            if Path(name).suffix in DISK_FORMATS:
                inspect_disk(report, Path(tmp, name))


def _check_manifest(report: Report, root: Path, mf: str, expected: list[str]) -> None:
    listed = []
    for line in (root / mf).read_text().splitlines():
        m = MANIFEST_RE.match(line)
        if not report.check(m is not None, f"{mf}: line syntax {line[:40]!r}") or m is None:
            continue
        algo, name, digest = m.groups()
        listed.append(name)
        target = root / name
        ok = target.is_file() and file_digest(target, algo.lower()) == digest
        report.check(ok, f"{mf}: {algo} of {name}")
    report.check(listed == expected, f"{mf}: lists {listed}")


def inspect_zip(report: Report, path: Path) -> None:
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory() as tmp:
        names = zf.namelist()
        report.layout.append(f"{path.name}: zip with {', '.join(names)}")
        report.check(zf.testzip() is None, "zip CRCs")
        zf.extractall(tmp)
        for name in names:
            p = Path(tmp, name)
            if p.suffix == ".ova":
                inspect_ova(report, p)
            elif p.suffix in DISK_FORMATS:
                inspect_disk(report, p)
        if any(n.endswith(".vhdx") for n in names):
            roles = ("boot", "cf", "flash", "dump")
            want = {f"Virtual Hard Disks/hd-{r}.vhdx" for r in roles}
            report.check(want <= set(names), "Hyper-V zip has the four VHDX in Virtual Hard Disks")
            report.check("Import-IPVA.ps1" in names, "Hyper-V zip has Import-IPVA.ps1")
            files = {n: Path(tmp, n) for n in names}
            report.views.append(import_views.hyperv_view(files, report.sizes))


def inspect_dir(report: Report, path: Path) -> None:
    report.layout.append(f"{path}/: directory")
    entries = sorted(path.iterdir())
    for p in entries:
        if p.suffix in DISK_FORMATS:
            inspect_disk(report, p)
    for p in entries:
        if p.suffix == ".xml":
            # a real validator, not a skip: ./dev installs libvirt-clients
            _check_tool(report, f"{p.name}: virt-xml-validate", ["virt-xml-validate", p, "domain"])
            report.layout.append(f"  {p.name}: libvirt domain")
            report.views.append(import_views.libvirt_view(p, report.sizes))
        elif p.suffix == ".vmx":
            inspect_vmx(report, p)
        elif p.suffix == ".sh":
            _check_tool(report, f"{p.name}: bash -n", ["bash", "-n", p])
            report.layout.append(f"  {p.name}: install script")
            if "qm create" in p.read_text():
                report.views.append(import_views.proxmox_script_view(p))


def inspect_vmx(report: Report, path: Path) -> None:
    cfg = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(" = ")
        if report.check(bool(sep) and value.startswith('"'), f"{path.name}: line {line[:40]!r}"):
            cfg[key] = value.strip('"')
    report.check(
        cfg.get("monitor_control.pseudo_perfctr", "").upper() == "TRUE",
        f"{path.name}: monitor_control.pseudo_perfctr",
    )
    for key, value in cfg.items():
        if key.endswith(".fileName") and key.startswith("ide"):
            report.check((path.parent / value).is_file(), f"{path.name}: {key} {value} exists")
            report.layout.append(f"  {key.split('.')[0]}: {value}")
    report.layout.append(f"  {path.name}: NIC {cfg.get('ethernet0.virtualDev')}")
    report.views.append(import_views.vmx_view(cfg, path.parent))


def inspect_package(path: Path) -> Report:
    report = Report()
    if path.is_dir():
        inspect_dir(report, path)
    elif path.suffix == ".ova":
        inspect_ova(report, path)
    elif path.suffix == ".zip":
        inspect_zip(report, path)
    elif path.suffix == ".vmx":
        inspect_vmx(report, path)
    elif path.suffix in DISK_FORMATS:
        inspect_disk(report, path)
    else:
        raise click.UsageError(f"{path}: not a package this tool knows (ova, zip, dir, vmx)")
    return report


@click.command()
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Only failed checks and the verdict.")
def inspect(package: Path, quiet: bool) -> None:
    """Validate PACKAGE (OVA, zip, vmware/proxmox/libvirt dir) and print its layout."""
    report = inspect_package(package)
    if not quiet:
        for line in report.layout:
            click.echo(line)
        for view in report.views:
            click.echo(f"{view.title}:")
            for line in view.lines:
                click.echo(f"  {line}")
        click.echo("checks:")
    for ok, what in report.checks:
        if not ok or not quiet:
            click.echo(f"  {'ok  ' if ok else 'FAIL'} {what}")
    for warning in report.warnings:
        click.echo(f"  WARN {warning}")
    failed = sum(1 for ok, _ in report.checks if not ok)
    verdict = "OK" if report.ok else f"{failed} check(s) failed"
    if report.warnings:
        verdict += f", {len(report.warnings)} warning(s)"
    click.echo(f"{package.name}: {verdict}")
    if not report.ok:
        raise SystemExit(1)
