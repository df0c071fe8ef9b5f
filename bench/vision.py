#!/usr/bin/env python3
"""Images through Corral against llama.cpp's own llama-mtmd-cli, same model, projector and
pictures, same llama.cpp source (issue 29).

    bench/vision.py --corral target/release/corral --mtmd-cli BIN/llama-mtmd-cli \
        --model SmolLM2.gguf --tiny TINY.gguf --big BIG.gguf --pictures DIR [--rounds 3]

1. Same answer: for each picture in DIR, the tiny projector's model answers one question at
   temperature 0 through Corral's /api/chat and through llama-mtmd-cli; the texts must be equal.
2. Image prefill: with the big projector (CLIP ViT-B/16 shape, 196 image tokens), the time from
   request to first token (Corral's prompt_eval_duration: encode plus decode) against
   llama-mtmd-cli's own figures (encode time plus llama.cpp's prompt eval time), alternating, a new
   picture each round so nothing is cached; then the same picture again through Corral (its cells
   reused) against the first time.
3. The pause: a client streams a long text answer while another sends a picture; the longest gap
   between the first client's tokens while the picture is encoded, against its median gap.

Both sides run the model with one thread (`num_thread` 1, `-t 1`), and both format the chat with
the model's own Jinja template (`--jinja`; without it the CLI writes ChatML without the system
prompt SmolLM2's template adds, and the answers differ for that reason alone).
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import base64

QUESTION = "What is in this picture?"


def request(port, path, body, stream=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", path, json.dumps(body).encode())
    resp = conn.getresponse()
    if resp.status >= 300:
        sys.exit(f"{path}: {resp.status} {resp.read()[:300]!r}")
    if stream:
        return resp
    return json.loads(resp.read())


def corral_chat(port, model, picture, predict=16, stream=False):
    with open(picture, "rb") as f:
        image = base64.b64encode(f.read()).decode()
    body = {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": QUESTION, "images": [image]}],
            "options": {"temperature": 0, "num_predict": predict, "num_thread": 1, "num_ctx": 1024}}
    return request(port, "/api/chat", body, stream)


def mtmd_cli(binary, model, projector, picture, predict=16):
    out = subprocess.run([binary, "-m", model, "--mmproj", projector, "--image", picture, "-p", QUESTION,
                          "-n", str(predict), "--temp", "0", "-t", "1", "-c", "1024", "-v", "--jinja"],
                         capture_output=True, text=True, check=True)
    encode = sum(float(m) for m in re.findall(r"encoding done in (\d+) ms", out.stderr))
    prompt = re.search(r"prompt eval time =\s+([\d.]+) ms", out.stderr)
    return out.stdout.strip(), encode + (float(prompt.group(1)) if prompt else float("nan"))


def serve(corral, tmp):
    env = dict(os.environ, OLLAMA_HOST="127.0.0.1:0", OLLAMA_MODELS=os.path.join(tmp, "models"), HOME=tmp,
               OLLAMA_NUM_PARALLEL="2", NO_COLOR="1")
    server = subprocess.Popen([corral, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        m = re.search(r"Listening on \S+:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            return server, int(m.group(1)), env
    sys.exit("the server did not start")


def create(corral, env, port, name, model, projector, tmp):
    modelfile = os.path.join(tmp, name)
    with open(modelfile, "w") as f:
        f.write(f"FROM {model}\nFROM {projector}\n")
    env = dict(env, OLLAMA_HOST=f"127.0.0.1:{port}")
    subprocess.run([corral, "create", name, "-f", modelfile], env=env, check=True, capture_output=True)


def pause(port, model, picture):
    """Longest and median gap between a streaming client's tokens while another sends a picture."""
    body = {"model": model, "stream": True, "prompt": "Tell me a long story about a lighthouse keeper.",
            "options": {"temperature": 0, "num_predict": 160, "num_thread": 1, "num_ctx": 1024}}
    resp = request(port, "/api/generate", body, stream=True)
    stamps = []
    sent = threading.Event()
    done = {}

    def picture_client():
        sent.wait()
        start = time.monotonic()
        r = corral_chat(port, model, picture)
        done["window"] = (start, time.monotonic())
        done["prefill_ms"] = r["prompt_eval_duration"] / 1e6

    t = threading.Thread(target=picture_client)
    t.start()
    for line in resp:
        stamps.append(time.monotonic())
        if len(stamps) == 20:
            sent.set()
        if json.loads(line).get("done"):
            break
    t.join()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    lo, hi = done["window"]
    during = [b - a for a, b in zip(stamps, stamps[1:]) if a < hi and b > lo]
    return statistics.median(gaps) * 1e3, max(during or [0]) * 1e3, done["prefill_ms"]


def main():
    p = argparse.ArgumentParser()
    for flag in ("--corral", "--mtmd-cli", "--model", "--tiny", "--big", "--pictures"):
        p.add_argument(flag, required=True)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    # p*: the answers compared; q*: one per prefill round, and one to load with; z*: one per pause
    # round (each picture new to the server where its time is measured).
    def named(prefix):
        return sorted(os.path.join(a.pictures, f) for f in os.listdir(a.pictures)
                      if f.startswith(prefix) and f.endswith(".png"))
    pictures, fresh, pausing = named("p"), named("q"), named("z")
    if len(fresh) < a.rounds + 1 or len(pausing) < a.rounds:
        sys.exit(f"need {a.rounds + 1} q*.png and {a.rounds} z*.png pictures in {a.pictures}")
    with tempfile.TemporaryDirectory() as tmp:
        server, port, env = serve(a.corral, tmp)
        try:
            create(a.corral, env, port, "tiny-vlm", a.model, a.tiny, tmp)
            create(a.corral, env, port, "big-vlm", a.model, a.big, tmp)
            print("same answer (tiny projector, temperature 0, 16 tokens):")
            same = 0
            for pic in pictures:
                ours = corral_chat(port, "tiny-vlm", pic)["message"]["content"].strip()
                theirs, _ = mtmd_cli(a.mtmd_cli, a.model, a.tiny, pic)
                same += ours == theirs
                print(f"  {os.path.basename(pic)}: {'same' if ours == theirs else 'DIFFERENT'}\n"
                      f"    corral: {ours!r}\n    llama-mtmd-cli: {theirs!r}")
            print(f"  {same}/{len(pictures)} the same")

            print("image prefill, big projector (196 image tokens), ms:")
            ours, theirs, cached = [], [], []
            corral_chat(port, "big-vlm", fresh[0], predict=1)  # load
            for r in range(a.rounds):
                pic = fresh[r + 1]
                if r % 2 == 0:
                    _, t_cli = mtmd_cli(a.mtmd_cli, a.model, a.big, pic, predict=1)
                    first = corral_chat(port, "big-vlm", pic, predict=1)["prompt_eval_duration"] / 1e6
                else:
                    first = corral_chat(port, "big-vlm", pic, predict=1)["prompt_eval_duration"] / 1e6
                    _, t_cli = mtmd_cli(a.mtmd_cli, a.model, a.big, pic, predict=1)
                again = corral_chat(port, "big-vlm", pic, predict=1)["prompt_eval_duration"] / 1e6
                ours.append(first)
                theirs.append(t_cli)
                cached.append(again)
                print(f"  round {r + 1}: corral {first:.0f}, llama-mtmd-cli {t_cli:.0f}, corral again {again:.0f}")
            print(f"  median corral {statistics.median(ours):.0f} / llama-mtmd-cli {statistics.median(theirs):.0f}"
                  f" = {statistics.median(ours) / statistics.median(theirs):.2f}")
            print(f"  second turn with the same picture: {statistics.median(cached):.0f} ms,"
                  f" {statistics.median(cached) / statistics.median(ours):.3f} of the first")

            print("pause of a streaming client while another's picture is prefilled:")
            for r in range(a.rounds):
                median, longest, prefill = pause(port, "big-vlm", pausing[r])
                print(f"  round {r + 1}: median gap {median:.0f} ms, longest gap {longest:.0f} ms"
                      f" (picture prefill {prefill:.0f} ms)")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
