"""docker-compose.yml stays a valid Milvus standalone definition (no Docker engine needed)."""

from pathlib import Path

import yaml


def test_compose_file_defines_a_pinned_healthy_milvus_standalone() -> None:
    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"etcd", "minio", "milvus"}
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
        assert service["healthcheck"]["test"], name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], volume
    milvus = services["milvus"]
    assert {"19530:19530", "9091:9091"} <= set(milvus["ports"])
    assert "http://localhost:9091/healthz" in milvus["healthcheck"]["test"]
    assert all(dep["condition"] == "service_healthy" for dep in milvus["depends_on"].values())
