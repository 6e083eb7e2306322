import CCurl
import CSystem
