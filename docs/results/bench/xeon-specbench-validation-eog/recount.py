"""Per-set decode speed / the target alone, two bench runs side by side
(worst prompt of either in brackets), counted as llama.cpp's tools count:
an answer that ended with an end-of-generation token counts that token,
whose pass was timed (these runs were recorded before edgespec's own
decode tok/s counted it).

Usage: python3 recount.py RUN_DIR [RUN_DIR ...]   (each with runs.jsonl)
"""
import json,sys
sets=['code','summarization','translation','qa','math_reasoning','rag','mt-bench']
modes=['hybrid:auto','llama-ngram-map-k','llama-ngram-mod']
data=[]
for d in sys.argv[1:]:
    rows=[json.loads(l) for l in open(d+'/runs.jsonl')]
    data.append([r for r in rows if 'set' in r])
def count_time(r):
    """Tokens the decode phase produced (the end token included, as llama.cpp
    counts) and its time."""
    if r['mode'].startswith('llama'):
        return r['tokens'], r['tokens']/r['decode_tok_s']
    n=r['tokens']
    return n-1+(1 if n<128 else 0), r['decode_s']
def rate(rs):
    c=sum(count_time(r)[0] for r in rs); t=sum(count_time(r)[1] for r in rs); return c/t
print('| set | '+' | '.join(modes)+' |')
print('|---|'+'---|'*len(modes))
for s in sets:
    cells=[]
    for m in modes:
        ratios=[];worst=9
        for rows in data:
            R=[r for r in rows if r['set']==s]
            tg=[r for r in R if r['mode']=='target']; md=[r for r in R if r['mode']==m]
            ratios.append(rate(md)/rate(tg))
            for r in md:
                base=[x for x in tg if x['prompt']==r['prompt']][0]
                worst=min(worst, rate([r])/rate([base]))
        cells.append(f"{' / '.join(f'{x:.2f}' for x in ratios)} ({worst:.2f})")
    print(f'| {s} | '+' | '.join(cells)+' |')
