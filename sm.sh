mount --make-rprivate /
mount --bind /tmp/b8/pam.d /etc/pam.d
(sleep 1.5; echo 000000) | pamtester b-gw2 root authenticate >/dev/null 2>&1 &
sleep 1
P=$(pgrep -n pamtester)
awk '/^[0-9a-f]+-/{name=$6} /^Rss:/{rss[name]+=$2} END{for(n in rss) if (rss[n]>0) print rss[n], n}' /proc/$P/smaps | sort -rn | head -20
grep -E "VmRSS|RssAnon|RssFile" /proc/$P/status
wait
