"""/docs: Swagger UI over /openapi.json, every asset served by the collector; Try it out sends a real event."""
from __future__ import annotations


def test_the_documents_example_is_tracked_as_it_stands(client, sent):
    """What Try it out sends untouched: the path parameters' and the body's examples."""
    document = client.get("/openapi.json").get_json()
    item = document["paths"]["/collect/{aid}/{tid}/event"]
    ids = {p["name"]: p["example"] for p in item["parameters"]}
    example = item["post"]["requestBody"]["content"]["application/json"]["example"]
    response = client.post(f"/collect/{ids['aid']}/{ids['tid']}/event", json=example)
    assert response.status_code == 204
    [record] = sent()
    assert record["topic"] == "events.1"
    assert {k: record["value"][k] for k in example} == example
