"""Reranking over HTTP in the shapes rerank clients send (issue 29): llama-server's and Jina's
`/v1/rerank` (also `/rerank`, `/v1/reranking`), which LangChain, LlamaIndex and Open WebUI call,
and Ollama-style `/api/rerank`.

The models are random-weight cross-encoders (llama.cpp's RANK pooling) made by the harness: a BERT
one, and an XLM-RoBERTa one that `corral create` converted from a Hugging Face directory laid out
as bge-reranker-v2-m3's is. Their scores rank nothing meaningfully; what is checked is the protocol: every document scored
against the query, best first, `top_n`, `return_documents`, usage, and the errors.
"""

import httpx
import ollama
import pytest

from conftest import CHAT

RERANKER = "reranker"
XLMR = "xlmr-reranker"
QUERY = "what is a panda?"
DOCUMENTS = ["hi", "it is a bear",
             "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China."]


@pytest.fixture(scope="module")
def http(base_url, api_key):
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120)


def test_capability(base_url):
    caps = ollama.Client(host=base_url).show(RERANKER).capabilities
    assert "rerank" in caps and "embedding" not in caps and "completion" not in caps


def test_v1_rerank(http):
    r = http.post("/v1/rerank", json={"model": RERANKER, "query": QUERY, "documents": DOCUMENTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == RERANKER
    assert body["usage"]["prompt_tokens"] > 0
    results = body["results"]
    assert sorted(x["index"] for x in results) == [0, 1, 2]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
    assert all("document" not in x for x in results)
    # The aliases answer the same; top_n keeps the best; documents come back as {"text"}.
    for path in ("/rerank", "/v1/reranking"):
        again = http.post(path, json={"model": RERANKER, "query": QUERY, "documents": DOCUMENTS,
                                      "top_n": 2, "return_documents": True}).json()["results"]
        assert [x["index"] for x in again] == [x["index"] for x in results[:2]]
        assert [x["document"]["text"] for x in again] == [DOCUMENTS[x["index"]] for x in again]


def test_api_rerank_and_object_documents(http):
    documents = [{"text": d} for d in DOCUMENTS]
    r = http.post("/api/rerank", json={"model": RERANKER, "query": QUERY, "documents": documents,
                                       "return_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prompt_eval_count"] > 0 and body["total_duration"] > 0
    assert [x["document"] for x in body["results"]] == [documents[x["index"]] for x in body["results"]]


def test_errors(http):
    r = http.post("/v1/rerank", json={"model": CHAT, "query": QUERY, "documents": DOCUMENTS})
    assert r.status_code == 400 and "does not support reranking" in r.json()["error"]["message"]
    r = http.post("/v1/rerank", json={"model": RERANKER, "query": QUERY, "documents": []})
    assert r.status_code == 400 and "documents must not be empty" in r.text
    r = http.post("/v1/rerank", json={"model": RERANKER, "query": QUERY, "documents": [7]})
    assert r.status_code == 400 and "document 0" in r.text
    r = http.post("/v1/rerank", json={"model": RERANKER, "query": QUERY, "documents": DOCUMENTS, "top_n": 0})
    assert r.status_code == 400 and "invalid top_n" in r.text
    r = http.post("/api/embed", json={"model": RERANKER, "input": "hi"})
    assert r.status_code == 400 and "does not support embeddings" in r.text


def test_xlmr_reranker_from_a_directory(http, base_url):
    shown = ollama.Client(host=base_url).show(XLMR)
    assert "rerank" in shown.capabilities
    assert shown.modelinfo["tokenizer.ggml.model"] == "t5"
    r = http.post("/v1/rerank", json={"model": XLMR, "query": QUERY, "documents": DOCUMENTS, "top_n": 3})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert sorted(x["index"] for x in results) == [0, 1, 2]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
