"""python-kubernetes' DynamicClient against the gateway's Kubernetes face:
discovery, list, get, merge patch, and a watch resumed from the list's
resourceVersion. Prints what it saw as one JSON object; the Rust test
asserts on it. Usage: dynamic_client.py KUBECONFIG NAMESPACE NAME"""

import json
import sys

from kubernetes import config, dynamic

kubeconfig, namespace, name = sys.argv[1:4]
client = dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig))
streams = client.resources.get(api_version="image.openshift.io/v1", kind="ImageStream")

listed = streams.get(namespace=namespace)
got = streams.get(namespace=namespace, name=name)
patched = streams.patch(
    namespace=namespace,
    name=name,
    body={"metadata": {"labels": {"client": "python"}}},
    content_type="application/merge-patch+json",
)
watched = []
for event in streams.watch(
    namespace=namespace, resource_version=listed.metadata.resourceVersion, timeout=5
):
    obj = event["object"]
    watched.append([event["type"], obj.metadata.name, (obj.metadata.labels or {}).get("client")])
    if watched[-1][2] == "python":
        break

print(json.dumps({
    "listed": [item.metadata.name for item in listed.items],
    "got": {"name": got.metadata.name, "apiVersion": got.apiVersion, "uid": got.metadata.uid},
    "patched": (patched.metadata.labels or {}).get("client"),
    "watched": watched,
}))
