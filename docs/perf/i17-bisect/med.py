import sys, statistics, re
for f in sys.argv[1:]:
    rows=[]
    for line in open(f):
        t=line.split()
        d={'spsc':float(t[5])}
        i=6
        while i+1 < len(t):
            d[t[i]]=float(t[i+1]); i+=2
        rows.append(d)
    mx=max(r['spsc'] for r in rows)
    q=[r for r in rows if r['spsc']>=0.75*mx]
    keys=[k for k in rows[0] if k!='spsc']
    def med(rs,k): return statistics.median([r[k] for r in rs if k in r])
    print(f, "n=%d quiet=%d spsc med %.2fM (quiet %.2fM)"%(len(rows),len(q),med(rows,'spsc')/1e6,med(q,'spsc')/1e6))
    print("   all  : "+"  ".join("%s %.2f"%(k,med(rows,k)) for k in keys))
    print("   quiet: "+"  ".join("%s %.2f"%(k,med(q,k)) for k in keys))
