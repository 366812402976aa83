# Sessions/s versus concurrency, one line per server (bench/run.py).
#
#   gnuplot -e "datafile='sweep.dat'; outfile='x.png'; subtitle='...'" \
#       bench/plot.gp
#
# datafile: a header line "concurrency NAME1 NAME2 ..." then one row per
# concurrency; "nan" where a server has no figure.
if (!exists("datafile")) datafile = 'sweep.dat'
if (!exists("outfile")) outfile = 'sessions-vs-concurrency.png'
if (!exists("subtitle")) subtitle = ''

set terminal pngcairo size 900,560 font "sans,10"
set output outfile
set title "AUTH PLAIN, 4 KiB message, 1 recipient, plaintext, 127.0.0.1\n" \
          . subtitle
set xlabel "concurrent sessions (postern bench --concurrency)"
set ylabel "sessions/s"
set logscale x
set xtics (1, 10, 50, 100, 200)
set yrange [0:*]
set grid
set key outside right top
set datafile missing "nan"
stats datafile skip 1 nooutput
ncols = STATS_columns
plot for [i=2:ncols] datafile using 1:i with linespoints lw 2 pt 7 \
     title columnheader(i)
