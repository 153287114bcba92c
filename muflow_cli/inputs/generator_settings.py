"""Generator settings: what diffusion front-ends write into a file (AUTOMATIC1111's parameters, ComfyUI's
graphs, InvokeAI's and Fooocus's metadata) and the names of generators in a Software or CreatorTool field.
Said without the prompt: the tool, the model, how long the settings are."""

from __future__ import annotations

import json
import re

from muflow_cli.inputs.provenance_evidence import clean

# Text chunks that diffusion front-ends write (PNG tEXt/zTXt/iTXt keys, lower case) and who writes them.
GENERATOR_KEYS = {
    "parameters": "AUTOMATIC1111-style",  # AUTOMATIC1111, Forge, SD.Next, Fooocus (a1111 scheme)
    "fooocus_scheme": "Fooocus",
    "prompt": "ComfyUI",
    "workflow": "ComfyUI",
    "invokeai_metadata": "InvokeAI",
    "invokeai_graph": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "dream": "InvokeAI",
}
# Names of generators in a Software or CreatorTool field (lower case, matched as words).
GENERATOR_NAMES = ("stable diffusion", "novelai", "midjourney", "dall-e", "dall·e", "firefly", "comfyui", "automatic1111",
                   "invokeai", "fooocus", "imagen", "leonardo.ai", "sdxl", "diffusers", "gemini", "chatgpt", "flux.1")
SETTINGS_WORDS = re.compile(r"\b(Steps|Sampler|CFG scale|Seed|Model hash): ")
MODEL_IN_PARAMETERS = re.compile(r"\bModel: ([^,\n]{1,200})")
GRAPH_MAX_CHARS = 4 << 20  # a longer ComfyUI prompt graph is not parsed for its checkpoint


def names_generator(text: str) -> bool:
    low = text.lower()
    return any(re.search(r"(?<![a-z])" + re.escape(name) + r"(?![a-z])", low) for name in GENERATOR_NAMES)


def _comfy_model(prompt: str) -> str | None:
    """The checkpoint a ComfyUI prompt (a JSON graph) loads, if it names one."""
    if len(prompt) > GRAPH_MAX_CHARS:
        return None
    try:
        graph = json.loads(prompt)
    except ValueError:
        return None
    nodes = graph.values() if isinstance(graph, dict) else []
    for node in nodes:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and isinstance(inputs.get("ckpt_name"), str):
            return inputs["ckpt_name"]
    return None


def generator_text(texts: dict[str, str], where: str) -> str | None:
    """What the settings chunks say, without the prompt: the tool, the model, how long the settings are."""
    keys = [k for k in texts if k in GENERATOR_KEYS]
    if not keys:
        return None
    params = texts.get("parameters", "")
    if "parameters" in keys and not SETTINGS_WORDS.search(params):
        keys.remove("parameters")  # a 'parameters' chunk that is not diffusion settings
        if not keys:
            return None
    tools = list(dict.fromkeys(GENERATOR_KEYS[k] for k in keys))
    if "Fooocus" in tools:
        tools = ["Fooocus"]
    model = None
    if "parameters" in keys:
        found = MODEL_IN_PARAMETERS.search(params)
        model = found.group(1).strip() if found else None
    elif "prompt" in keys:
        model = _comfy_model(texts["prompt"])
    size = sum(len(texts[k]) for k in keys)
    quoted = ", ".join(f"'{clean(k, 24)}'" for k in keys[:4])
    return (f"{where} {quoted} ({'/'.join(tools)} settings, {size:,} characters, not shown)"
            + (f"; model {clean(model)}" if model else ""))
