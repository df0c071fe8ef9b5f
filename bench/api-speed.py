#!/usr/bin/env python3
"""Speed of a model through Corral's (or Ollama's) /api/generate.

    bench/api-speed.py http://127.0.0.1:11434 smollm2 [runs]

Prints decode tokens/s (128 greedy tokens after a short prompt), prompt tokens/s (a ~500-token
prompt, one output token), and what a request costs on top of the engine: time to first token
seen by the client minus the engine's own prompt-processing time. The model is loaded first, so
load time is not counted. Medians over `runs` (default 5).
"""
import json
import statistics
import sys
import time
import urllib.request


def post(base, path, body, stream=False):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=600)


def generate(base, body):
    with post(base, "/api/generate", dict(body, stream=False)) as r:
        return json.load(r)


def main():
    base, model = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    generate(base, {"model": model, "prompt": ""})  # load
    # Prompt lookup off: the decode figure is the kernels', not what the answer's repetitions add.
    opts = {"temperature": 0, "seed": 1, "draft_num_predict": 0}
    decode, prompt, overhead = [], [], []
    long_prompt = "Summarise the following text. " + " ".join(f"Item {i} is a small red box." for i in range(60))
    for i in range(runs):
        r = generate(base, {"model": model, "prompt": f"Tell me a story about a cat number {i}.", "raw": False,
                            "options": dict(opts, num_predict=128)})
        decode.append(r["eval_count"] / (r["eval_duration"] / 1e9))
        r = generate(base, {"model": model, "prompt": long_prompt + f" ({i})", "options": dict(opts, num_predict=1)})
        prompt.append(r["prompt_eval_count"] / (r["prompt_eval_duration"] / 1e9))
        prompt_tokens = r["prompt_eval_count"]
        start = time.perf_counter()
        first = None
        with post(base, "/api/generate", {"model": model, "prompt": f"Hi ({i})", "stream": True,
                                          "options": dict(opts, num_predict=4)}) as resp:
            for line in resp:
                chunk = json.loads(line)
                if first is None and not chunk.get("done"):
                    first = time.perf_counter() - start
                if chunk.get("done"):
                    engine_prompt = chunk["prompt_eval_duration"] / 1e9
        overhead.append((first - engine_prompt) * 1000)
    print(f"model {model}, {runs} runs, medians")
    print(f"decode:            {statistics.median(decode):8.1f} tokens/s")
    print(f"prompt:            {statistics.median(prompt):8.1f} tokens/s ({prompt_tokens} tokens)")
    print(f"request overhead:  {statistics.median(overhead):8.1f} ms (time to first token minus engine prompt time)")


if __name__ == "__main__":
    main()
