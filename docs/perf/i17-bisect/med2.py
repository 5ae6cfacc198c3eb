import sys, statistics, collections
groups=collections.OrderedDict()
for f in sys.argv[1:]:
    for line in open(f):
        t=line.split()
        key=(int(t[2]),int(t[3]))
        d={'spsc':float(t[5])}
        i=6
        while i+1 < len(t):
            d[t[i]]=float(t[i+1]); i+=2
        groups.setdefault(key,[]).append(d)
for key in sorted(groups):
    rows=groups[key]
    keys=[k for k in rows[0] if k!='spsc']
    med=lambda k: statistics.median([r[k] for r in rows if k in r])
    print("%6dK %6d n=%d spsc %6.2fM  "%(key[0],key[1],len(rows),med('spsc')/1e6)+"  ".join("%s %.2f"%(k,med(k)) for k in keys))
