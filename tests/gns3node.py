"""GNS3's own code on our appliance file; runs in gns3-server's venv (tests/gns3server_env.py),
never in the product's: `python gns3node.py check FILE [IMAGES]`, or
`python gns3node.py command FILE IMAGES WORKDIR kvm|tcg`.

`check`: the appliance file as gns3-server loads and installs it — its Appliance schema
(`gns3server.schemas.Appliance`), each image's size and md5sum as its image check computes
them, the template its ApplianceToTemplate makes, validated by its QEMU template schema.
`command`: that template as a node: the controller's Node (which properties go to the
compute) posts to the compute's own `create_qemu_node` route function (no HTTP in between),
and the QemuVM it creates builds the QEMU command line (`_build_command`). gns3-server
starts that command only after its ubridge helper (a C program neither Debian nor PyPI
packages), so the test runs the command itself. Prints JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any


def load(path: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(appliance, version, template settings) as gns3-server makes them."""
    from fastapi.encoders import jsonable_encoder
    from gns3server import schemas
    from gns3server.controller.appliance import Appliance
    from gns3server.controller.appliance_to_template import ApplianceToTemplate

    appliance = Appliance(str(path), json.loads(path.read_text(encoding="utf-8")), builtin=False)
    schemas.Appliance.model_validate(appliance.asdict())  # as load_appliances() does
    (version,) = appliance.versions
    template = ApplianceToTemplate().new_template(appliance.asdict(), version, "local")
    create = schemas.TemplateCreate(**template)  # as ApplianceManager._create_template
    settings = jsonable_encoder(create, exclude_unset=True)
    template_settings = schemas.QemuTemplate.model_validate(settings).model_dump()
    template_settings["template_type"] = "qemu"
    template_settings["compute_id"] = "local"
    return appliance, version, template_settings


def check_images(appliance: Any, images_dir: Path) -> list[str]:
    """What gns3-server's image check would refuse: a size or md5sum that differs."""
    from gns3server.utils.images import md5sum

    problems = []
    for image in appliance.images:
        path = images_dir / image["filename"]
        if not path.is_file():
            problems.append(f"{image['filename']}: missing")
            continue
        if path.stat().st_size != image["filesize"]:
            problems.append(f"{image['filename']}: size {path.stat().st_size} != filesize")
        if md5sum(str(path), cache_to_md5file=False) != image["md5sum"]:
            problems.append(f"{image['filename']}: md5sum differs")
    return problems


class InProcessCompute:
    """The compute as the controller sees it (Compute.post), answered by the compute's own
    route functions in this process instead of over HTTP."""

    id = "local"
    name = "local"
    host = "127.0.0.1"
    console_host = "127.0.0.1"

    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []

    async def post(self, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
        from gns3server import schemas
        from gns3server.api.routes.compute.qemu_nodes import create_qemu_node
        from gns3server.compute.project_manager import ProjectManager

        self.posted.append((path, data))
        parts = path.strip("/").split("/")
        if parts == ["projects"]:
            ProjectManager.instance().create_project(project_id=data["project_id"],
                                                     path=data.get("path"))  # fmt: skip
            return Answer({})
        if parts[0] == "projects" and parts[2:] == ["qemu", "nodes"]:
            node = await create_qemu_node(uuid.UUID(parts[1]), schemas.QemuCreate(**data))
            return Answer(node)
        raise NotImplementedError(path)


class Answer:
    def __init__(self, json: dict[str, Any]) -> None:
        self.json = json


async def node_command(path: Path, images_dir: Path, workdir: Path, kvm: bool) -> dict[str, Any]:
    from gns3server.compute.qemu import Qemu
    from gns3server.config import Config
    from gns3server.controller import Controller
    from gns3server.controller.project import Project

    _appliance, _version, template = load(path)
    server = Config.instance().settings.Server
    server.images_path = str(images_dir)
    server.projects_path = str(workdir)
    # GNS3's own switch for hosts whose KVM does not work (the suite probes it: accel.py)
    Config.instance().settings.Qemu.enable_hardware_acceleration = kvm
    project_id = str(uuid.uuid4())
    controller = Controller.instance()
    compute = InProcessCompute()
    controller._computes["local"] = compute
    project = Project(name="ipva-lab", project_id=project_id, path=str(workdir / project_id),
                      controller=controller)  # fmt: skip
    node = await project.add_node_from_template(dict(template))
    vm = Qemu.instance().get_node(node.id, project_id=project_id)
    argv = await vm._build_command()
    return {
        "posted": [p for p, _ in compute.posted],
        "argv": argv,
        "console_port": vm._internal_console_port,
        "cwd": vm.working_dir,
    }


def main() -> int:
    what, file = sys.argv[1], Path(sys.argv[2])
    if what == "check":
        appliance, version, template = load(file)
        problems = check_images(appliance, Path(sys.argv[3])) if len(sys.argv) > 3 else []
        print(json.dumps({"template": template, "version": version, "problems": problems},
                         default=str))  # fmt: skip
        return 1 if problems else 0
    if what == "command":
        images, workdir, accel = Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
        out = asyncio.run(node_command(file, images, workdir, kvm=accel == "kvm"))
        print(json.dumps(out, default=str))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
